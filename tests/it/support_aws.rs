//! Real peers for the AWS tests: moto (`moto_server`, a Python S3/EC2/IAM API server) started
//! per test on 127.0.0.1 or [::1] only, serving HTTPS with a throwaway CA; static test
//! credentials passed to the SDK explicitly (never through the process environment, so no
//! credential or metadata endpoint is ever asked); and a one-file HTTP server on 127.0.0.1 for
//! the ECS task metadata.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use dualprobe::aws::clients::ClientParts;
use dualprobe::checks::CheckEnv;
use dualprobe::config::Config;
use dualprobe::model::family::Family;
use dualprobe::model::target::Target;
use dualprobe::net::resolver::DnsResolver;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{DnsServer, loopback};

/// The names the SDK resolves for us-east-1 with dual-stack on.
pub const S3_DUALSTACK: &str = "s3.dualstack.us-east-1.amazonaws.com";
/// EC2's dual-stack endpoint in us-east-1.
pub const EC2_DUALSTACK: &str = "ec2.us-east-1.api.aws";

/// A CA and a server certificate for the AWS endpoint names and the loopback addresses, as
/// PEM files moto and `tls.ca_file` read.
pub struct AwsPki {
    // Held: dropping it deletes the PEM files.
    _dir: TempDir,
    /// The CA certificate (PEM).
    pub ca_file: PathBuf,
    /// The server certificate (PEM).
    pub cert_file: PathBuf,
    /// The server key (PEM).
    pub key_file: PathBuf,
}

impl AwsPki {
    /// Makes the CA and the server certificate.
    pub fn new() -> AwsPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "dualprobe AWS test CA");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let names: Vec<String> = [S3_DUALSTACK, EC2_DUALSTACK, "localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(names).expect("server params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).expect("sign server cert");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server-key.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        AwsPki {
            _dir: dir,
            ca_file,
            cert_file,
            key_file,
        }
    }
}

impl Default for AwsPki {
    fn default() -> Self {
        AwsPki::new()
    }
}

/// One moto server process on one loopback address; killed when dropped.
pub struct Moto {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Moto {
    /// Starts moto on `family`'s loopback, on `port` (0: any free one), serving HTTPS with
    /// `pki`'s certificate. `no_auth_actions`: moto checks credentials, signatures and IAM
    /// policies after that many requests (`INITIAL_NO_AUTH_ACTION_COUNT`); `None`: never.
    pub fn start(pki: &AwsPki, family: Family, port: u16, no_auth_actions: Option<u32>) -> Moto {
        let mut last = String::new();
        for _ in 0..8 {
            let chosen = if port == 0 { free_port(family) } else { port };
            let addr = SocketAddr::new(loopback(family), chosen);
            let mut cmd = Command::new("moto_server");
            cmd.arg("-H")
                .arg(loopback(family).to_string())
                .arg("-p")
                .arg(chosen.to_string())
                .arg("-c")
                .arg(&pki.cert_file)
                .arg("-k")
                .arg(&pki.key_file)
                .env("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("MOTO_ALLOW_NONEXISTENT_REGION", "false")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if let Some(n) = no_auth_actions {
                cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
            }
            let mut child = cmd
                .spawn()
                .expect("moto_server is installed (pip install 'moto[server]')");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Moto { child, addr };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    last = format!("moto on {addr} exited with {status}: {err}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("moto on {addr} did not listen within 60 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if port != 0 {
                break;
            }
        }
        panic!("moto did not start: {last}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on `family`'s loopback right now (moto binds it a moment later).
pub fn free_port(family: Family) -> u16 {
    std::net::TcpListener::bind(SocketAddr::new(loopback(family), 0))
        .and_then(|l| l.local_addr())
        .expect("bind loopback:0")
        .port()
}

/// A port free on both loopback addresses right now.
pub fn free_port_both() -> u16 {
    for _ in 0..64 {
        let p = free_port(Family::Ipv4);
        if std::net::TcpListener::bind(SocketAddr::new(loopback(Family::Ipv6), p)).is_ok() {
            return p;
        }
    }
    panic!("no port free on both loopback addresses");
}

/// Static credentials, handed to the SDK directly.
pub fn credentials(key: &str, secret: &str) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(key, secret, None, None, "dualprobe-test"))
}

/// moto's conventional test credentials.
pub fn test_credentials() -> SharedCredentialsProvider {
    credentials("testing", "testing")
}

/// `target` with explicit credentials on its `aws:` block.
pub fn with_credentials(target: &Arc<Target>, creds: SharedCredentialsProvider) -> Arc<Target> {
    let mut t = (**target).clone();
    t.aws.as_mut().expect("an aws: target").credentials = Some(creds);
    Arc::new(t)
}

/// A config with the test nameserver and `targets` (a YAML list body), and its probe env.
pub fn load(dns: &DnsServer, targets: &str) -> (Config, CheckEnv) {
    let yaml = format!(
        "interval: 60s\ntimeout: 20s\nresolver:\n  nameservers: [\"{}\"]\ntargets:\n{targets}",
        dns.addr(Family::Ipv4)
    );
    let config = Config::from_yaml(&yaml, "test", None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let resolver = DnsResolver::new(&config.nameservers, Duration::from_secs(2)).unwrap();
    (config, CheckEnv::new(resolver))
}

/// One `targets:` item (YAML) for `service` in us-east-1 on `port`, trusting `pki`'s CA.
pub fn aws_target(name: &str, service: &str, port: u16, pki: &AwsPki, checks: &str) -> String {
    format!(
        "  - name: {name}\n    aws: {{ service: {service}, region: us-east-1 }}\n    port: {port}\n    checks: {checks}\n    tls: {{ ca_file: \"{}\" }}\n",
        pki.ca_file.display()
    )
}

/// The configured target `name`, with `creds` on its `aws:` block.
pub fn target(config: &Config, name: &str, creds: SharedCredentialsProvider) -> Arc<Target> {
    with_credentials(config.target(name).unwrap(), creds)
}

/// An EC2 client of `t` pinned to `family`, built the way the `ec2` check builds its own.
pub fn ec2_client(t: &Target, family: Family, env: &CheckEnv) -> aws_sdk_ec2::Client {
    let aws = t.aws.as_ref().unwrap();
    ClientParts::for_target(
        t,
        aws,
        family,
        &env.resolver,
        None,
        aws.credentials.clone().unwrap(),
    )
    .unwrap()
    .ec2()
    .client
}

/// Runs a Python snippet with boto3 against moto (for IAM setup, which the crate has no SDK
/// for). `ENDPOINT` and `CA` are set in its environment.
pub fn boto3(script: &str, moto: &Moto, pki: &AwsPki) -> String {
    let endpoint = format!("https://{}", moto.addr);
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("ENDPOINT", endpoint)
        .env("CA", &pki.ca_file)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_PROXY", "*")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "boto3 script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An HTTP/1.1 server on 127.0.0.1 that answers `GET {path}` with `body` (JSON) and 404
/// otherwise, counting requests.
pub struct OneFileServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests served.
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl OneFileServer {
    /// Starts serving. Call inside a tokio runtime.
    pub async fn start(path: &str, body: String) -> OneFileServer {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (path, counter) = (path.to_string(), Arc::clone(&hits));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let (path, body, counter) = (path.clone(), body.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&got);
                    let want = format!("GET {path} ");
                    let resp = if head.starts_with(&want) {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_string()
                    };
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        OneFileServer { addr, hits, task }
    }
}

impl Drop for OneFileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain-HTTP AWS Query API peer on 127.0.0.1 that answers each `Action=...` of the request
/// body with an XML document (real response shapes, e.g. from the API reference), which a test
/// may change while it runs ([`QueryApiServer::set_answer`]), and records the actions asked.
pub struct QueryApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The actions received, in order.
    pub actions: Arc<std::sync::Mutex<Vec<String>>>,
    answers: Arc<std::sync::Mutex<Vec<(&'static str, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl QueryApiServer {
    /// Starts serving `(action, xml)` pairs. Call inside a tokio runtime.
    pub async fn start(answers: Vec<(&'static str, String)>) -> QueryApiServer {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let actions = Arc::new(std::sync::Mutex::new(Vec::new()));
        let answers = Arc::new(std::sync::Mutex::new(answers));
        let (served, log) = (Arc::clone(&answers), Arc::clone(&actions));
        let task = tokio::spawn(async move {
            let answers = served;
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let (answers, log) = (Arc::clone(&answers), Arc::clone(&log));
                tokio::spawn(async move {
                    loop {
                        let Some(body) = read_request(&mut s).await else {
                            return;
                        };
                        let action = body
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("Action="))
                            .unwrap_or_default()
                            .to_string();
                        log.lock().unwrap().push(action.clone());
                        let xml = answers
                            .lock()
                            .unwrap()
                            .iter()
                            .find(|(a, _)| *a == action)
                            .map(|(_, xml)| xml.clone());
                        let resp = match xml {
                            Some(xml) => format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: text/xml;charset=UTF-8\r\ncontent-length: {}\r\n\r\n{xml}",
                                xml.len()
                            ),
                            None => {
                                let xml = format!(
                                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>InvalidAction</Code><Message>{action}</Message></Error></Errors><RequestID>x</RequestID></Response>"
                                );
                                format!(
                                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{xml}",
                                    xml.len()
                                )
                            }
                        };
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        QueryApiServer {
            addr,
            actions,
            answers,
            task,
        }
    }

    /// From now on answers `action` with `xml` (added if it had no answer).
    pub fn set_answer(&self, action: &'static str, xml: String) {
        let mut answers = self.answers.lock().unwrap();
        match answers.iter_mut().find(|(a, _)| *a == action) {
            Some(answer) => answer.1 = xml,
            None => answers.push((action, xml)),
        }
    }
}

impl Drop for QueryApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request with a `content-length` body; returns the body.
async fn read_request(s: &mut tokio::net::TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while got.len() < head_end + len {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&got[head_end..head_end + len]).into_owned())
}
