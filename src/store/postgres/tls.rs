//! TLS to PostgreSQL with libpq's `sslmode` meanings, which tokio-postgres only knows in part:
//! `disable` (plain TCP), `prefer` (the default: TLS when the server offers it), `require`
//! (TLS or nothing); both encrypt without checking the certificate, as libpq does without a
//! root certificate. `verify-ca` and `verify-full` check the chain (Mozilla's roots, plus the
//! PEM file `sslrootcert` names) and the host name. Source: the PostgreSQL manual, 34.19.1
//! "Client Verification of Server Certificates".

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How the certificate is checked, once the URL's options are read.
#[derive(Clone, Debug, Default)]
pub(super) struct TlsPolicy {
    /// `verify-ca`/`verify-full`: check the chain and host name.
    pub verify: bool,
    /// `sslrootcert`: a PEM file of extra roots.
    pub root_cert: Option<String>,
}

/// Takes the options tokio-postgres cannot parse out of `url` (`sslmode=verify-*`, which is
/// `require` plus verification, and `sslrootcert`), returning the URL it can parse and the
/// policy. Errors name the option, never the URL.
pub(super) fn split_url(url: &str) -> Result<(String, TlsPolicy), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), TlsPolicy::default()));
    };
    let mut policy = TlsPolicy::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (key, value) {
            ("sslmode", "verify-ca" | "verify-full") => {
                policy.verify = true;
                kept.push("sslmode=require".to_string());
            }
            ("sslrootcert", path) => {
                let path = url::form_urlencoded::parse(format!("p={path}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                policy.root_cert = Some(path);
            }
            _ => kept.push(pair.to_string()),
        }
    }
    if policy.root_cert.is_some() && !policy.verify {
        // libpq verifies the chain whenever a root certificate is given.
        policy.verify = true;
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, policy))
}

/// The rustls configuration for `policy`.
pub(super) fn client_config(policy: &TlsPolicy) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    if !policy.verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &policy.root_cert {
        let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
        let mut reader = std::io::BufReader::new(pem.as_slice());
        for cert in rustls_pemfile_certs(&mut reader) {
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The certificates of a PEM file (other sections skipped).
fn rustls_pemfile_certs(reader: &mut dyn std::io::BufRead) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let mut text = Vec::new();
    let _ = reader.read_to_end(&mut text);
    CertificateDer::pem_slice_iter(&text)
        .filter_map(Result::ok)
        .collect()
}

/// `prefer`/`require`: the handshake's signatures are checked, the certificate is not.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_options_tokio_postgres_cannot_parse_become_a_policy() {
        let (url, p) =
            split_url("postgres://u:p@db/x?sslmode=verify-full&application_name=a").unwrap();
        assert_eq!(
            url,
            "postgres://u:p@db/x?sslmode=require&application_name=a"
        );
        assert!(p.verify && p.root_cert.is_none());
        let (url, p) =
            split_url("postgres://db/x?sslrootcert=%2Fetc%2Fca.pem&sslmode=require").unwrap();
        assert_eq!(url, "postgres://db/x?sslmode=require");
        assert!(p.verify);
        assert_eq!(p.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (url, p) = split_url("postgresql://db/x?sslmode=prefer").unwrap();
        assert_eq!(url, "postgresql://db/x?sslmode=prefer");
        assert!(!p.verify);
        assert!(client_config(&p).is_ok());
        assert!(client_config(&TlsPolicy {
            verify: true,
            root_cert: Some("/nonexistent.pem".into())
        })
        .unwrap_err()
        .contains("sslrootcert /nonexistent.pem"));
    }
}
