//! A real SMTP server on loopback for the mail tests: it speaks enough SMTP for a client
//! (greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), keeps what it receives, and can
//! answer DATA with a transient or a permanent failure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How the sink answers a message's DATA.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Accept,
    /// 451 to the first `n` messages, then 250
    TransientFirst(usize),
    /// 550 to every message
    Reject,
}

/// One received mail, parsed.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub content_type: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    /// The `token` query parameter of the first link in the text part.
    pub fn token(&self) -> String {
        let at = self.text.find("token=").expect("no link with a token") + "token=".len();
        self.text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }
}

#[derive(Default)]
struct Seen {
    mails: Vec<Mail>,
    data_commands: usize,
}

pub struct SmtpSink {
    pub url: String,
    seen: Arc<Mutex<Seen>>,
}

impl SmtpSink {
    pub async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let shared = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(session(socket, mode, shared.clone()));
            }
        });
        Self { url, seen }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.seen.lock().unwrap().mails.clone()
    }

    /// DATA commands answered so far (delivered or refused).
    pub fn attempts(&self) -> usize {
        self.seen.lock().unwrap().data_commands
    }

    /// Waits (up to 20 s) until a mail to `to` whose subject contains `subject` has arrived.
    pub async fn wait_for(&self, to: &str, subject: &str) -> Mail {
        for _ in 0..400 {
            if let Some(m) = self
                .mails()
                .into_iter()
                .find(|m| m.to.eq_ignore_ascii_case(to) && m.subject.contains(subject))
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no mail to {to} about {subject:?}; got {:?}", self.mails());
    }
}

async fn session(socket: tokio::net::TcpStream, mode: Mode, seen: Arc<Mutex<Seen>>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    if write.write_all(b"220 sink ready\r\n").await.is_err() {
        return;
    }
    let mut rcpt = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let answer: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
            b"250 sink\r\n"
        } else if command.starts_with("MAIL FROM")
            || command.starts_with("RSET")
            || command.starts_with("NOOP")
        {
            b"250 OK\r\n"
        } else if command.starts_with("RCPT TO") {
            rcpt = line
                .trim_end()
                .split(['<', '>'])
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            b"250 OK\r\n"
        } else if command == "DATA" {
            if write.write_all(b"354 go ahead\r\n").await.is_err() {
                return;
            }
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let mut s = seen.lock().unwrap();
            s.data_commands += 1;
            let refuse = match mode {
                Mode::Accept => None,
                Mode::TransientFirst(n) if s.data_commands <= n => {
                    Some(&b"451 try again later\r\n"[..])
                }
                Mode::TransientFirst(_) => None,
                Mode::Reject => Some(&b"550 no such mailbox\r\n"[..]),
            };
            match refuse {
                Some(answer) => answer,
                None => {
                    s.mails.push(parse(&rcpt, data.as_bytes()));
                    b"250 queued\r\n"
                }
            }
        } else if command == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 not implemented\r\n"
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}

fn parse(to: &str, raw: &[u8]) -> Mail {
    let parsed = mailparse::parse_mail(raw).expect("a parsable mail");
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
            .unwrap_or_default()
    };
    let part = |mime: &str| {
        parsed
            .subparts
            .iter()
            .find(|p| p.ctype.mimetype == mime)
            .and_then(|p| p.get_body().ok())
            .unwrap_or_default()
    };
    Mail {
        to: to.to_owned(),
        subject: header("Subject"),
        message_id: header("Message-ID"),
        content_type: parsed.ctype.mimetype.clone(),
        text: part("text/plain"),
        html: part("text/html"),
    }
}
