//! What the kernel knows about an upstream TCP connection that the request
//! path asks: how many bytes the upstream has acknowledged (Linux
//! `TCP_INFO`, `tcpi_bytes_acked`), for the direct path's retry decision.
//!
//! # Why our own `getsockopt`
//! pingora-core 0.9.1's `get_tcp_info` (behind `SocketDigest::tcp_info`)
//! fails unless the kernel returns exactly the size of its struct, which ends
//! at `tcpi_rcv_wnd` (Linux 6.2): on the kernels most nodes run (Debian 12's
//! 6.1, Ubuntu 22.04's 5.15) it always fails. `tcpi_bytes_acked` is there
//! since Linux 4.2, so this reads the kernel's struct at whatever length it
//! has and takes the field when the kernel filled it. It is the library's
//! one `unsafe` block (`lib.rs` denies the rest); re-check the pingora
//! function on upgrade, and drop this if it stops requiring an exact size.
#![allow(unsafe_code)]

/// Bytes of this socket's stream the peer has acknowledged, if the kernel
/// reports it. `fd` must be a socket the caller holds open.
#[cfg(target_os = "linux")]
pub(crate) fn bytes_acked(fd: std::os::fd::RawFd) -> Option<u64> {
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + std::mem::size_of::<u64>();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `tcp_info` is plain integers, so all-zero is a valid value;
    // the kernel writes at most `len` bytes into it and sets `len` to what
    // it wrote. A stale `fd` makes the call fail, never touch memory.
    let (rc, info) = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (rc, info)
    };
    (rc == 0 && len as usize >= end).then_some(info.tcpi_bytes_acked)
}

/// Not known off Linux: every caller then assumes the bytes may have arrived.
#[cfg(not(target_os = "linux"))]
pub(crate) fn bytes_acked(_fd: i32) -> Option<u64> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    #[test]
    fn counts_what_the_peer_acknowledged() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let before = bytes_acked(client.as_raw_fd()).expect("TCP_INFO");
        client.write_all(&[7; 100]).expect("write");
        let mut buf = [0; 100];
        server.read_exact(&mut buf).expect("read");
        // The acknowledgement follows the data; wait for it, briefly.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut after = before;
        while after != before + 100 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            after = bytes_acked(client.as_raw_fd()).expect("TCP_INFO");
        }
        assert_eq!(after, before + 100);
        assert_eq!(bytes_acked(-1), None, "not a socket");
    }
}
