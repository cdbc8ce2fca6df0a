//! A static web server for the demo Agent Desktop page and the SDK build, on
//! 127.0.0.1 with a free port (the page's origin is what the extension
//! allows, so `localhost` on the same port is a second, different origin).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

pub struct WebServer {
    pub port: u16,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../browser-extensions")
}

impl WebServer {
    pub fn start() -> WebServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind web server");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream));
            }
        });
        WebServer { port }
    }

    /// The demo page on the allowed origin.
    pub fn demo_url(&self, query: &str) -> String {
        format!("http://127.0.0.1:{}/{query}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The same page on an origin nobody allowed.
    pub fn other_origin_url(&self) -> String {
        format!("http://localhost:{}/", self.port)
    }
}

fn serve(stream: TcpStream) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers; only GET is served.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/");
    let file = match path {
        "/" | "/index.html" => Some(root().join("demo/index.html")),
        "/demo.js" => Some(root().join("demo/demo.js")),
        "/sdk/agent-helper.js" => Some(root().join("dist/sdk/agent-helper.js")),
        _ => None,
    };
    let mut out = &stream;
    match file.and_then(|f| std::fs::read(&f).ok().map(|b| (f, b))) {
        Some((f, body)) => {
            let kind = if f.extension().is_some_and(|e| e == "js") { "text/javascript" } else { "text/html" };
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = out.write_all(&body);
        }
        None => {
            let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
}
