//! The few system calls the lab needs that std does not offer: entering a network namespace,
//! and raw packet sockets for the delay line. Linux only.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Whether this process runs as root (creating namespaces needs CAP_SYS_ADMIN).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Moves the calling thread (only it) into the network namespace `ns` (a file under
/// `/var/run/netns`). Sockets the thread creates afterwards belong to that namespace.
pub fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: a valid descriptor and a namespace type; setns changes only this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a short-lived thread inside the network namespace `ns`, so the caller's thread
/// never changes namespace.
pub fn in_netns<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(ns)?;
            Ok(f())
        })
        .join()
        .expect("a thread inside a network namespace panicked")
    })
}

/// Asks the kernel to SIGKILL the calling process when the thread that spawned it exits; for
/// `Command::pre_exec`, so agents never outlive a test process that was killed.
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of the calling process.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Length of the virtio-net header in front of every frame of a [`PacketSocket`].
pub const VNET_HDR_LEN: usize = 10;

/// A raw `AF_PACKET` socket bound to one interface, reading and writing whole Ethernet frames,
/// each behind a virtio-net header (`PACKET_VNET_HDR`). The header carries the checksum and
/// segmentation offload state, so a frame read from one veth and written to another keeps it:
/// without it, TCP segments coalesced by TSO would be too large to write and packets whose
/// checksum the sender left to the "hardware" would arrive corrupt.
pub struct PacketSocket(OwnedFd);

fn set_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl PacketSocket {
    /// Binds to interface `ifname` of the calling thread's network namespace. Frames this socket
    /// (or anything else) sends out of the interface are not read back.
    pub fn bind(ifname: &str) -> io::Result<PacketSocket> {
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket creation; the descriptor is owned right below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol.into()) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_int(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        set_int(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20)?;
        let name = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol;
        sll.sll_ifindex = index as libc::c_int;
        // SAFETY: the address is a sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // Reads wake up every 100 ms, so the reader threads notice when to stop.
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
        // SAFETY: the option value is a timeval of the size given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket(fd))
    }

    /// The next frame (virtio-net header first) in `buf`: its length, `Ok(None)` when nothing came
    /// within 100 ms, or `Err` with a frame too large for `buf` (`InvalidData`, frame skipped).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: writes at most buf.len() bytes into buf; MSG_TRUNC makes it report the full length.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let n = n as usize;
        if n > buf.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {n} bytes truncated")));
        }
        Ok(Some(n))
    }

    /// Writes one frame (virtio-net header first) out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: reads frame.len() bytes from frame.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
