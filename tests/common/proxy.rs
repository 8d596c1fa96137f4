//! A loopback TCP proxy between a client and a server that can pass, refuse or black-hole
//! traffic on demand ([`TcpProxy`]), to cut a client's connection without touching the
//! server.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes both ways (new connections are connected to the target).
    Pass,
    /// Close every existing connection and close new ones right after accepting them.
    Refuse,
    /// Keep forwarding existing connections, but close new ones right after accepting them:
    /// a client whose connection the server drops cannot reconnect.
    RefuseNew,
    /// Stop forwarding but lose nothing: bytes wait in the socket buffers, new connections
    /// wait too, and everything flows again on [`ProxyMode::Pass`] (a cut that heals).
    Pause,
    /// Keep connections open but forward nothing: bytes both ways are read and dropped.
    /// New connections are accepted and black-holed too (never connected to the target),
    /// and stay dead even after switching back to [`ProxyMode::Pass`].
    Blackhole,
}

/// A tokio TCP proxy listening on 127.0.0.1:0 forwarding to `target`. Must be created
/// inside a tokio runtime. Dropping it stops the accept loop and every connection task.
/// Note: with a current-thread runtime, blocking calls in the test (e.g. `std::thread::sleep`,
/// `ZkEnsemble::wait_for_leader`) stall the proxy; prefer `flavor = "multi_thread"`.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts the proxy in [`ProxyMode::Pass`]. Panics outside a tokio runtime.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        std_listener.set_nonblocking(true).expect("proxy nonblocking");
        let addr = std_listener.local_addr().unwrap();
        let listener = TcpListener::from_std(std_listener).expect("proxy listener (inside tokio?)");
        let (mode, mode_rx) = watch::channel(ProxyMode::Pass);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            // Owned by the accept task: aborting the task drops the set, aborting all
            // connection tasks.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    res = listener.accept() => {
                        let Ok((sock, _)) = res else { continue };
                        counter.fetch_add(1, Ordering::SeqCst);
                        conns.spawn(serve_conn(sock, target, mode_rx.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        TcpProxy { addr, target, mode, accepted, task }
    }

    /// Listening address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "127.0.0.1:PORT" of the proxy, to give to a client instead of the server's.
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    /// The server the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Switches mode; takes effect immediately on existing connections.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// Current mode.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }

    /// Number of connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads and discards everything from `sock` until EOF/error or mode Refuse.
async fn blackhole(mut sock: TcpStream, mut mode: watch::Receiver<ProxyMode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *mode.borrow_and_update() == ProxyMode::Refuse {
            return;
        }
        tokio::select! {
            r = sock.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            r = mode.changed() => if r.is_err() { return },
        }
    }
}

async fn serve_conn(client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<ProxyMode>) {
    let current = *mode.borrow_and_update();
    match current {
        ProxyMode::Refuse | ProxyMode::RefuseNew => return, // dropped: closed right after accept
        ProxyMode::Blackhole => return blackhole(client, mode).await,
        ProxyMode::Pass | ProxyMode::Pause => {}
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let mut cbuf = vec![0u8; 16 * 1024];
    let mut ubuf = vec![0u8; 16 * 1024];
    let mut black = false;
    loop {
        if *mode.borrow_and_update() == ProxyMode::Pause {
            // Read nothing until the mode changes: bytes stay queued in the kernel.
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            r = cr.read(&mut cbuf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let m = *mode.borrow();
                    if m == ProxyMode::Refuse { return }
                    let forward = matches!(m, ProxyMode::Pass | ProxyMode::RefuseNew);
                    if forward && !black && uw.write_all(&cbuf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            r = ur.read(&mut ubuf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let m = *mode.borrow();
                    if m == ProxyMode::Refuse { return }
                    let forward = matches!(m, ProxyMode::Pass | ProxyMode::RefuseNew);
                    if forward && !black && cw.write_all(&ubuf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            r = mode.changed() => {
                if r.is_err() { return }
                match *mode.borrow_and_update() {
                    ProxyMode::Refuse => return,
                    // once black-holed, a connection stays dead (its byte stream has a gap)
                    ProxyMode::Blackhole => black = true,
                    ProxyMode::Pass | ProxyMode::Pause | ProxyMode::RefuseNew => {}
                }
            }
        }
    }
}
