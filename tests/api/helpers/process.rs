//! The built `daftra-bridge` binary as a child process, started one way.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use super::env::BridgeEnv;

/// One run of the built `daftra-bridge`: its arguments, an environment of `PATH` plus the
/// [`BridgeEnv`] given (nothing else is inherited), standard input closed, and standard output
/// and error discarded unless [`Bridge::stdout`] / [`Bridge::stderr`] say otherwise.
pub struct Bridge(Command);

impl Bridge {
    /// `daftra-bridge <args>` in the environment `env`.
    pub fn new(args: &[&str], env: &BridgeEnv) -> Bridge {
        let mut c = Command::new(env!("CARGO_BIN_EXE_daftra-bridge"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.vars())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Bridge(c)
    }

    /// One more argument (a path, say).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Bridge {
        self.0.arg(arg);
        self
    }

    /// Runs it in `dir` instead of the test's working directory.
    pub fn current_dir(mut self, dir: &Path) -> Bridge {
        self.0.current_dir(dir);
        self
    }

    /// Where [`Bridge::spawn`] sends standard output.
    pub fn stdout(mut self, to: Stdio) -> Bridge {
        self.0.stdout(to);
        self
    }

    /// Where [`Bridge::spawn`] sends standard error.
    pub fn stderr(mut self, to: Stdio) -> Bridge {
        self.0.stderr(to);
        self
    }

    /// Runs it to its end with both outputs captured, blocking this thread (for `#[test]`s and
    /// multi-threaded runtimes). Panics when it cannot start.
    pub fn output(mut self) -> Output {
        self.0.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.0.output().expect("the built daftra-bridge binary")
    }

    /// [`Bridge::output`], awaited: the test's runtime keeps serving (its simulator, say).
    pub async fn output_async(mut self) -> Output {
        self.0.stdout(Stdio::piped()).stderr(Stdio::piped());
        tokio::process::Command::from(self.0)
            .output()
            .await
            .expect("the built daftra-bridge binary")
    }

    /// Starts it; see [`Running`]. Panics when it cannot start.
    pub fn spawn(mut self) -> Running {
        Running(Some(
            self.0.spawn().expect("the built daftra-bridge binary"),
        ))
    }
}

/// A running `daftra-bridge`, killed with SIGKILL (a crash) and reaped when dropped.
pub struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    /// Whether it has not exited yet.
    pub fn is_running(&mut self) -> bool {
        self.child().try_wait().expect("its status").is_none()
    }

    fn signal(&mut self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child().id()).expect("a pid");
        // SAFETY: kill(2) has no memory preconditions; the child is not reaped yet.
        unsafe { libc::kill(pid, signal) };
    }

    /// Sends SIGTERM: a graceful shutdown.
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGSTOP: the process freezes with its connections open (a VM pause, a stall).
    pub fn freeze(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// Sends SIGCONT: a frozen process resumes where it stopped.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    /// Waits for it to exit; its standard output and error when they were `Stdio::piped()`.
    pub fn wait_with_output(mut self) -> Output {
        let child = self.0.take().expect("running");
        child.wait_with_output().expect("its exit")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
