//! A loopback TCP proxy that delays what the server sends by a settable time, and can drop
//! every connection at once: for the orderings that only a slow answer produces.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards client->server at once, server->client after `delay`; `kill()` drops every
/// connection so far.
pub struct DelayProxy {
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    conns: Arc<StdMutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl DelayProxy {
    pub async fn start(target: SocketAddr, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delay_ms = Arc::new(AtomicU64::new(delay.as_millis() as u64));
        let conns: Arc<StdMutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (d, c) = (delay_ms.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let d = d.clone();
                let h = tokio::spawn(async move {
                    let server = TcpStream::connect(target).await.unwrap();
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 65536];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                    let down_read = async move {
                        let mut buf = vec![0u8; 65536];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let at = Instant::now() + Duration::from_millis(d.load(Ordering::SeqCst));
                            if tx.send((at, buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    };
                    let down_write = async move {
                        while let Some((at, bytes)) = rx.recv().await {
                            tokio::time::sleep_until(at.into()).await;
                            if cw.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = async { tokio::join!(down_read, down_write) } => {}
                    }
                });
                c.lock().unwrap().push(h);
            }
        });
        DelayProxy { addr, delay_ms, conns }
    }

    pub fn kill(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }
}
