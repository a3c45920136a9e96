//! The `vlsm-serve` binary finishes a request that is in flight when SIGTERM arrives.
#![cfg(unix)]

use crate::support as common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn sigterm_finishes_in_flight_request_then_exits() {
    let (mut child, addr) = spawn_binary(&[]);

    let (ct, body) =
        common::Form::new().file("image", "a.png", &common::png_bytes(40, 30, 1)).text("prompt", "x").finish();
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(s, "POST /api/segment HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
    // Half the body now: the request is in flight when the signal comes.
    let half = body.len() / 2;
    s.write_all(&body[..half]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&body[half..]).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "in-flight request not finished: {}", resp.lines().next().unwrap_or(""));

    let status = wait_exit(&mut child, Instant::now() + Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("shutting down"), "{err}");
    assert!(TcpStream::connect(&addr).is_err(), "still accepting after exit");
}

/// Starts the `vlsm-serve` binary with the tiny model on a free loopback port and `args` before
/// `--model`; returns the child (stdout taken, stderr piped) and the address it printed.
pub fn spawn_binary(args: &[&str]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_vlsm-serve"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .arg("--model")
        .arg(common::tiny_model())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vlsm-serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.trim().strip_suffix('/')).expect("address line").to_string();
    (child, addr)
}

/// Waits for `child` to exit; fails the test if it is still running at `deadline`.
pub fn wait_exit(child: &mut std::process::Child, deadline: std::time::Instant) -> std::process::ExitStatus {
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(std::time::Instant::now() < deadline, "server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
