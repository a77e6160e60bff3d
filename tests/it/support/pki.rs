//! A throwaway PKI made with rcgen: a test CA (its certificate written as PEM to a tempdir, for
//! `tls.ca_file`) and server certificates it issues — valid, expired, or for the wrong name —
//! with fixed validity dates so tests can assert the exact notAfter a probe records.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

use super::{A_ONLY_HOST, DUAL_HOST, TWICE_HOST};

/// A certificate chain and key a server presents.
pub struct ServerCert {
    /// Leaf first, then the issuing CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
    /// The leaf's notAfter, unix seconds.
    pub not_after: i64,
}

impl Clone for ServerCert {
    fn clone(&self) -> Self {
        ServerCert {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            not_after: self.not_after,
        }
    }
}

/// The test CA plus the certificates tests need.
pub struct Pki {
    // Held: dropping it deletes `ca_file`.
    _dir: TempDir,
    /// PEM file holding the CA certificate: the value for `tls.ca_file`.
    pub ca_file: PathBuf,
    /// Valid for every test host name and both loopback addresses, until [`Pki::NOT_AFTER`].
    pub server: ServerCert,
    /// Valid names, but expired in 2021.
    pub expired: ServerCert,
    /// Valid dates, but only for `wrong.test`.
    pub wrong_name: ServerCert,
}

impl Pki {
    /// (year, month, day) of the good certificate's notAfter: fixed, so tests can compare.
    pub const NOT_AFTER: (i32, u8, u8) = (2045, 6, 1);

    /// Makes a new CA and its certificates. Nothing here is trusted outside the tempdir.
    pub fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "dualprobe test CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).expect("self-sign CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("write CA PEM");
        let ca = Issuer::new(params, ca_key);
        let ca_der = ca_cert.der().clone();

        let (y, m, d) = Pki::NOT_AFTER;
        let names = [
            DUAL_HOST,
            A_ONLY_HOST,
            TWICE_HOST,
            "localhost",
            "127.0.0.1",
            "::1",
        ];
        let server = issue(&ca, &ca_der, &names, (2024, 1, 1), (y, m, d));
        let expired = issue(&ca, &ca_der, &names, (2020, 1, 1), (2021, 1, 1));
        let wrong_name = issue(&ca, &ca_der, &["wrong.test"], (2024, 1, 1), (y, m, d));
        Pki {
            _dir: dir,
            ca_file,
            server,
            expired,
            wrong_name,
        }
    }

    /// `tls.ca_file` as a YAML scalar.
    pub fn ca_file_yaml(&self) -> String {
        format!("\"{}\"", self.ca_file.display())
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

fn issue(
    ca: &Issuer<'static, KeyPair>,
    ca_der: &CertificateDer<'static>,
    names: &[&str],
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> ServerCert {
    let key = KeyPair::generate().expect("leaf key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.first().copied().unwrap_or("test"));
    params.distinguished_name = dn;
    params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let not_after = params.not_after.unix_timestamp();
    let cert = params.signed_by(&key, ca).expect("sign leaf");
    ServerCert {
        chain: vec![cert.der().clone(), ca_der.clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_after,
    }
}
