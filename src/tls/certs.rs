//! Loads one certificate chain and its private key from PEM files, checking what an operator
//! needs told by name: a file that is missing or unreadable, a file with no PEM block of the
//! right kind, a key that does not belong to the certificate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A certificate ready to serve.
pub struct LoadedCert {
    pub certified: Arc<CertifiedKey>,
    /// The DNS names it covers (subject alternative names, else the common name), lowercase.
    /// A name may be a wildcard (`*.example.com`).
    pub names: Vec<String>,
    /// `notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The certificate file, for logs and metrics.
    pub cert_path: PathBuf,
}

impl fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCert")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .field("cert_path", &self.cert_path)
            .finish()
    }
}

impl LoadedCert {
    /// The name the expiry metric carries: the first DNS name, or the file when it has none.
    pub fn label(&self) -> String {
        self.names
            .first()
            .cloned()
            .unwrap_or_else(|| self.cert_path.display().to_string())
    }
}

/// Which of the two files is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Cert,
    Key,
}

impl Part {
    /// The config field that names this file.
    pub fn field(self) -> &'static str {
        match self {
            Part::Cert => "cert",
            Part::Key => "key",
        }
    }
}

/// Why a pair was refused. The message never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError {
    pub part: Part,
    pub path: PathBuf,
    pub message: String,
    /// Both files are valid PEM but the key is not the certificate's: during a rotation this
    /// can be one file replaced before the other, so it is worth looking again.
    pub mismatch: bool,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for CertError {}

fn refuse(part: Part, path: &Path, message: impl Into<String>) -> CertError {
    CertError {
        part,
        path: path.to_path_buf(),
        message: message.into(),
        mismatch: false,
    }
}

/// Reads and checks the pair.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let chain = read_chain(cert_path)?;
    let key = read_key(key_path)?;
    let signing = any_supported_type(&key)
        .map_err(|e| refuse(Part::Key, key_path, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(CertError {
                mismatch: true,
                ..refuse(
                    Part::Key,
                    key_path,
                    format!(
                        "the private key does not match the certificate {}",
                        cert_path.display()
                    ),
                )
            })
        }
    }
    let (names, not_after) =
        describe(&certified.cert[0]).map_err(|m| refuse(Part::Cert, cert_path, m))?;
    Ok(LoadedCert {
        certified: Arc::new(certified),
        names,
        not_after,
        cert_path: cert_path.to_path_buf(),
    })
}

fn read_file(part: Part, path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| refuse(part, path, format!("cannot read: {e}")))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read_file(Part::Cert, path)?;
    let chain = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(Part::Cert, path, format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(refuse(
            Part::Cert,
            path,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found",
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read_file(Part::Key, path)?;
    match rustls_pemfile::private_key(&mut bytes.as_slice()) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(refuse(
            Part::Key,
            path,
            "no PEM private key (PKCS#8, PKCS#1 or SEC1) found",
        )),
        Err(e) => Err(refuse(Part::Key, path, format!("not valid PEM: {e}"))),
    }
}

/// The names and the expiry of a DER certificate.
fn describe(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        if let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}
