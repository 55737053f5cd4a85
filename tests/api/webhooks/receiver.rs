//! An HTTP receiver on a random loopback port that records every delivery and answers as told.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: String,
    pub answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    log: Mutex<Vec<Delivery>>,
    /// Statuses to answer, in order; 200 once empty.
    script: Mutex<VecDeque<u16>>,
    /// Answer nothing (hold the request) while set.
    hang: AtomicBool,
    /// `Location` of 3xx answers.
    location: Mutex<Option<String>>,
    /// How long each answer takes, in milliseconds.
    delay_ms: AtomicUsize,
    /// Requests being answered now, and the most at once.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// An HTTP receiver on a random loopback port that records every delivery.
pub struct Receiver {
    pub url: String,
    pub port: u16,
    state: Arc<ReceiverState>,
    server: actix_web::dev::ServerHandle,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<ReceiverState>>,
) -> HttpResponse {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.most_in_flight.fetch_max(now, Ordering::SeqCst);
    if state.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    let delay = state.delay_ms.load(Ordering::SeqCst) as u64;
    tokio::time::sleep(Duration::from_millis(delay)).await;
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let answered = state.script.lock().unwrap().pop_front().unwrap_or(200);
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    state.log.lock().unwrap().push(Delivery {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered,
    });
    let mut answer = HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).unwrap());
    if let Some(to) = state.location.lock().unwrap().clone() {
        answer.insert_header(("location", to));
    }
    answer.finish()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            state,
            server: handle,
        }
    }

    /// Answers these statuses to the next requests, then 200.
    pub fn answer(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    /// Forgets the statuses still to answer: 200 from now on.
    pub fn answer_ok(&self) {
        self.state.script.lock().unwrap().clear();
    }

    /// Sends `Location: url` with every answer.
    pub fn redirect_to(&self, url: &str) {
        *self.state.location.lock().unwrap() = Some(url.to_string());
    }

    /// Takes `ms` milliseconds over each answer.
    pub fn slow(&self, ms: usize) {
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The most requests it was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }

    /// Holds every request (answers nothing for two minutes) while `on`.
    pub fn hang(&self, on: bool) {
        self.state.hang.store(on, Ordering::SeqCst);
    }

    /// Every request received, in order.
    pub fn log(&self) -> Vec<Delivery> {
        self.state.log.lock().unwrap().clone()
    }

    /// Deliveries answered 2xx.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.log()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered))
            .collect()
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}
