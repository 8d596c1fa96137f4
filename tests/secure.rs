//! Secure connections against the Debian server: TLS with certificates made here (the right CA
//! connects, a wrong one fails closed) and SASL DIGEST-MD5 through a JAAS file (the right
//! password works, a wrong one fails closed). Built with `--features tls,sasl`, as the README's
//! test command and `.ci/run` do.
#![cfg(all(feature = "tls", feature = "sasl"))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{children, connect, expire_session, ServerOptions, ZkServer};
use zk_lock::zk::{Acls, SaslOptions, TlsOptions};
use zk_lock::{Error, Mutex, Session};

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install openssl and a JDK's keytool): {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate it signed for 127.0.0.1, the server's PKCS12 key and trust
/// stores, and a second CA that signed nothing.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make() -> Certs {
        let dir = common::process::fresh_dir("tls");
        let subj = |cn: &str| format!("/CN={cn}");
        for ca in ["ca", "other-ca"] {
            run(
                &dir,
                "openssl",
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.pem"),
                    "-subj",
                    &subj(&format!("zk-lock test {ca}")),
                ],
            );
        }
        run(
            &dir,
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        run(
            &dir,
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "server.pem",
                "-extfile",
                "san.ext",
            ],
        );
        run(
            &dir,
            "openssl",
            &[
                "pkcs12",
                "-export",
                "-in",
                "server.pem",
                "-inkey",
                "server.key",
                "-out",
                "keystore.p12",
                "-name",
                "server",
                "-passout",
                "pass:secret",
            ],
        );
        run(
            &dir,
            "keytool",
            &[
                "-importcert",
                "-noprompt",
                "-alias",
                "ca",
                "-file",
                "ca.pem",
                "-keystore",
                "truststore.p12",
                "-storetype",
                "PKCS12",
                "-storepass",
                "secret",
            ],
        );
        Certs { dir }
    }

    fn pem(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_server(certs: &Certs) -> (ZkServer, u16) {
    let port = common::process::free_ports(1)[0];
    let d = certs.dir.display();
    let opts = ServerOptions {
        extra_config: vec![
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory".into(),
            format!("secureClientPort={port}"),
            format!("ssl.keyStore.location={d}/keystore.p12"),
            "ssl.keyStore.password=secret".into(),
            "ssl.keyStore.type=PKCS12".into(),
            format!("ssl.trustStore.location={d}/truststore.p12"),
            "ssl.trustStore.password=secret".into(),
            "ssl.trustStore.type=PKCS12".into(),
            "ssl.clientAuth=none".into(),
        ],
        ..ServerOptions::default()
    };
    (ZkServer::start_with(opts), port)
}

/// A client that trusts the server's CA connects over TLS and takes a lock; one that trusts
/// another CA fails closed, with a typed error naming the failed attempts, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_the_right_ca_connects_and_a_wrong_ca_fails_closed() {
    let certs = Certs::make();
    let (server, port) = tls_server(&certs);
    let secure = format!("127.0.0.1:{port}");
    let path = common::unique_path("tls");

    let good = TlsOptions::new().with_pem_ca(&certs.pem("ca.pem")).unwrap();
    let session = Session::builder(&secure).tls(good).connect().await.expect("TLS with the right CA");
    let mutex = Mutex::new(&session, &path).unwrap();
    let guard = mutex.lock().await.unwrap();
    let plain = connect(&server.connect_string(), Duration::from_secs(10)).await;
    assert_eq!(children(&plain, &path).await.len(), 1, "the lock node was made over TLS");
    guard.release().await.unwrap();

    let wrong = TlsOptions::new().with_pem_ca(&certs.pem("other-ca.pem")).unwrap();
    let started = Instant::now();
    let refused = Session::builder(&secure).tls(wrong).reconnect_attempts(2).connect().await;
    match refused {
        Err(e @ Error::Connect { attempts, .. }) => {
            eprintln!("wrong CA: {e}");
            assert_eq!(attempts, 2);
        }
        other => panic!("a wrong CA must fail closed: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    // Plain text on the TLS port does not get in either.
    let plain_on_tls = Session::builder(format!("tcp://{secure}")).reconnect_attempts(1).connect().await;
    assert!(matches!(plain_on_tls, Err(Error::Connect { .. })), "{plain_on_tls:?}");
    assert!(children(&plain, &path).await.is_empty());
}

fn sasl_server(dir: &Path) -> ZkServer {
    let jaas = dir.join("jaas.conf");
    std::fs::write(
        &jaas,
        "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  user_app=\"secret\";\n};\n",
    )
    .unwrap();
    let opts = ServerOptions {
        extra_config: vec!["authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider".into()],
        jvm_args: vec![format!("-Djava.security.auth.login.config={}", jaas.display())],
        ..ServerOptions::default()
    };
    ZkServer::start_with(opts)
}

/// SASL DIGEST-MD5: the right password gets a session whose `creator_all` lock only it may use
/// (again after an expiry: the new session authenticates again); a wrong password fails closed
/// at once, without retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sasl_with_the_right_password_works_and_a_wrong_one_fails_closed() {
    let dir = common::process::fresh_dir("sasl");
    let server = sasl_server(&dir);
    let path = common::unique_path("sasl");

    let session = Session::builder(server.connect_string())
        .session_timeout(Duration::from_secs(2))
        .sasl(SaslOptions::digest_md5("app", "secret"))
        .connect()
        .await
        .expect("SASL with the right password");
    let mutex = Mutex::builder(&session, &path).acls(Acls::creator_all()).build().unwrap();
    mutex.lock().await.unwrap().release().await.unwrap();
    let stranger = connect(&server.connect_string(), Duration::from_secs(10)).await;
    let denied = Mutex::new(&stranger, &path).unwrap().lock().await;
    assert!(matches!(denied, Err(Error::NotAuthorized { .. })), "a stranger: {denied:?}");

    let client = session.client().unwrap();
    expire_session(&server.connect_string(), &client).await;
    drop(client);
    let again = tokio::time::timeout(Duration::from_secs(10), mutex.lock()).await.unwrap();
    again.expect("the new session authenticated again").release().await.unwrap();

    let started = Instant::now();
    let wrong = Session::builder(server.connect_string())
        .sasl(SaslOptions::digest_md5("app", "wrong"))
        .reconnect_attempts(5)
        .connect()
        .await;
    match wrong {
        Err(e @ Error::Connect { attempts, .. }) => {
            eprintln!("wrong password: {e}");
            assert_eq!(attempts, 1, "a failed authentication is not retried ({e})");
        }
        other => panic!("a wrong password must fail closed: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
