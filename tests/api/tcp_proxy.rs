//! A TCP proxy to put between the app and PostgreSQL, so a test can cut the database off
//! (connections closed, new ones refused) or black-hole it (connections accepted, nothing
//! forwarded), the way a network failure looks to the app, and bring it back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    /// Every connection is closed, and new ones are closed at once.
    Cut,
    /// New connections are accepted and then left without an answer; existing ones are cut.
    Blackhole,
}

pub struct TcpProxy {
    pub addr: SocketAddr,
    link: watch::Sender<Link>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (link, watching) = watch::channel(Link::Up);
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let tasks = tasks.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let state = *watching.borrow();
                    let task = match state {
                        Link::Up => tokio::spawn(forward(client, target)),
                        Link::Cut => {
                            drop(client);
                            continue;
                        }
                        Link::Blackhole => tokio::spawn(async move {
                            let _held = client;
                            std::future::pending::<()>().await;
                        }),
                    };
                    tasks.lock().unwrap().push(task);
                }
            }
        });
        Self {
            addr,
            link,
            tasks,
            accept,
        }
    }

    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
        if link != Link::Up {
            for task in self.tasks.lock().unwrap().drain(..) {
                task.abort();
            }
        }
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(target).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}
