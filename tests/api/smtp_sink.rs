//! A small SMTP server for the tests: it accepts every message over real TCP and keeps it,
//! and can be started late on a port chosen earlier, to play a mail server that was down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    /// The DATA section: headers and body.
    pub data: String,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<String> {
        self.data
            .lines()
            .take_while(|line| !line.is_empty())
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
    }

    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }

    /// The body as the reader sees it: quoted-printable decoded, lines joined again.
    pub fn text(&self) -> String {
        let quoted = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|encoding| encoding.eq_ignore_ascii_case("quoted-printable"));
        if !quoted {
            return self.body().replace("\r\n", "\n");
        }
        let decoded = quoted_printable::decode(self.body(), quoted_printable::ParseMode::Robust)
            .expect("lettre writes valid quoted-printable");
        String::from_utf8_lossy(&decoded).replace("\r\n", "\n")
    }
}

pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    arrived: watch::Sender<usize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SmtpSink {
    /// Listens on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    /// A free port with nothing listening on it yet: a mail server that is down.
    pub async fn reserve_port() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    /// Listens on a port chosen earlier with [`SmtpSink::reserve_port`].
    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::serve(TcpListener::bind(addr).await.unwrap())
    }

    fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let (arrived, _) = watch::channel(0);
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let (store, notify) = (mails.clone(), arrived.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { return };
                        tokio::spawn(session(stream, store.clone(), notify.clone()));
                    }
                }
            }
        });
        Self {
            addr,
            mails,
            arrived,
            stop: Some(stop),
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until a mail matching `predicate` has arrived, up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&Mail) -> bool,
    ) -> Option<Mail> {
        let mut changes = self.arrived.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(mail) = self.mails().into_iter().find(|m| predicate(m)) {
                    return Some(mail);
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Speaks just enough SMTP for lettre: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
async fn session(stream: TcpStream, mails: Arc<Mutex<Vec<Mail>>>, arrived: watch::Sender<usize>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut to = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let command = line.to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250-sink\r\n250 8BITMIME\r\n"
        } else if command.starts_with("RCPT TO:") {
            to = line[8..].trim().trim_matches(['<', '>']).to_owned();
            b"250 OK\r\n"
        } else if command.starts_with("DATA") {
            if write.write_all(b"354 go ahead\r\n").await.is_err() {
                return;
            }
            let mut data = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line == "." {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                data.push_str("\r\n");
            }
            let count = {
                let mut mails = mails.lock().unwrap();
                mails.push(Mail {
                    to: std::mem::take(&mut to),
                    data,
                });
                mails.len()
            };
            arrived.send_replace(count);
            b"250 OK queued\r\n"
        } else if command.starts_with("QUIT") {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 OK\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
