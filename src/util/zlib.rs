//! Raw deflate by zlib (the C library `libz-sys` builds from source), with
//! the match search tuned (`deflateTune`).
//!
//! Why not flate2's `Compress`: it offers zlib's ten levels only, and the
//! repository metadata wants a point between them. Level 9 makes files
//! smaller than createrepo_c's (level 6) but searches up to 4,096 earlier
//! positions for every match; level 8 still 1,024, and level 7 already
//! compresses primary.xml worse than level 6. Level 9's lazy evaluation with
//! a shorter search keeps nearly all of its gain at about half the time
//! (numbers in [`crate::publish::gzchunks`]). So this module wraps the five
//! zlib calls a chunk needs behind one safe type, as `libcrypto.rs` does for
//! signing.

use anyhow::{bail, Result};
use libz_sys as z;
use std::ffi::c_int;

/// zlib's match-search parameters (see `deflateTune` in zlib.h): matches
/// at least `good` long shorten the search, `lazy` is the longest match
/// still followed by a look one byte on, a match `nice` long ends the
/// search, and at most `chain` earlier positions are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub good: u16,
    pub lazy: u16,
    pub nice: u16,
    pub chain: u16,
}

impl Tuning {
    /// The bytes a cache key includes: chunks deflated with other
    /// parameters are other bytes.
    pub fn key_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        for (i, v) in [self.good, self.lazy, self.nice, self.chain]
            .into_iter()
            .enumerate()
        {
            b[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// How a [`RawDeflate::finish`] ends its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A sync flush: byte-aligned, the stream goes on (in another chunk).
    Sync,
    /// A final block: the deflate stream is complete.
    Final,
}

/// One raw deflate stream (no zlib or gzip wrapper) at level 9 with its
/// search tuned.
pub struct RawDeflate {
    // zlib keeps a pointer back to the stream in its state and checks it on
    // every call: the stream must not move, hence the box.
    stream: Box<z::z_stream>,
}

unsafe extern "C" fn zalloc(_: z::voidpf, items: z::uInt, size: z::uInt) -> z::voidpf {
    // SAFETY: plain malloc, zlib's own default allocator.
    unsafe { libc::malloc(items as usize * size as usize) }
}

unsafe extern "C" fn zfree(_: z::voidpf, p: z::voidpf) {
    // SAFETY: `p` came from `zalloc`.
    unsafe { libc::free(p) }
}

fn check(what: &str, rc: c_int) -> Result<()> {
    if rc != z::Z_OK {
        bail!("zlib {what} failed (code {rc})");
    }
    Ok(())
}

impl RawDeflate {
    pub fn new(tuning: Tuning) -> Result<Self> {
        let mut stream = Box::new(z::z_stream {
            next_in: std::ptr::null_mut(),
            avail_in: 0,
            total_in: 0,
            next_out: std::ptr::null_mut(),
            avail_out: 0,
            total_out: 0,
            msg: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            zalloc,
            zfree,
            opaque: std::ptr::null_mut(),
            data_type: 0,
            adler: 0,
            reserved: 0,
        });
        // SAFETY: a zeroed stream with allocators; the version and size are
        // those of the headers libz-sys was built with. -15: raw deflate
        // with a 32 KiB window; 8: zlib's default memory level.
        let rc = unsafe {
            z::deflateInit2_(
                &mut *stream,
                9,
                z::Z_DEFLATED,
                -15,
                8,
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                std::mem::size_of::<z::z_stream>() as c_int,
            )
        };
        check("deflateInit2", rc)?;
        let mut d = RawDeflate { stream };
        let t = tuning;
        // SAFETY: an initialised stream; the parameters are plain ints.
        let rc = unsafe {
            z::deflateTune(
                &mut *d.stream,
                t.good.into(),
                t.lazy.into(),
                t.nice.into(),
                t.chain.into(),
            )
        };
        check("deflateTune", rc)?;
        Ok(d)
    }

    /// Prime the stream with the bytes that precede its input (at most the
    /// last 32 KiB count).
    pub fn set_dictionary(&mut self, dictionary: &[u8]) -> Result<()> {
        let len = z::uInt::try_from(dictionary.len())?;
        // SAFETY: zlib reads `len` bytes of a live slice before returning.
        let rc = unsafe { z::deflateSetDictionary(&mut *self.stream, dictionary.as_ptr(), len) };
        check("deflateSetDictionary", rc)
    }

    /// Deflate `input`, appending to `out`.
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        for piece in input.chunks(z::uInt::MAX as usize) {
            self.run(piece, out, z::Z_NO_FLUSH)?;
        }
        Ok(())
    }

    /// End the input as `end` says, appending the rest of the output.
    pub fn finish(&mut self, end: End, out: &mut Vec<u8>) -> Result<()> {
        let flush = match end {
            End::Sync => z::Z_SYNC_FLUSH,
            End::Final => z::Z_FINISH,
        };
        self.run(&[], out, flush)
    }

    /// Call deflate until it has taken all of `input` and, for a flush,
    /// written everything out.
    fn run(&mut self, input: &[u8], out: &mut Vec<u8>, flush: c_int) -> Result<()> {
        let s = &mut *self.stream;
        s.next_in = input.as_ptr() as *mut u8;
        s.avail_in = input.len() as z::uInt;
        loop {
            if out.capacity() - out.len() < 4096 {
                out.reserve(out.capacity().max(64 * 1024));
            }
            let room = (out.capacity() - out.len()).min(z::uInt::MAX as usize);
            // SAFETY: the spare capacity is writable; `next_in` points into
            // `input`, which outlives this call.
            let rc = unsafe {
                s.next_out = out.as_mut_ptr().add(out.len());
                s.avail_out = room as z::uInt;
                z::deflate(s, flush)
            };
            let written = room - s.avail_out as usize;
            // SAFETY: deflate initialised `written` bytes after the length.
            unsafe { out.set_len(out.len() + written) };
            match rc {
                z::Z_STREAM_END => break,
                z::Z_OK | z::Z_BUF_ERROR => {}
                _ => bail!("zlib deflate failed (code {rc})"),
            }
            // Done when the input is taken and: nothing more is due
            // (no flush), output room was left over (a sync flush: deflate
            // fills it completely while it has more), or never before the
            // stream end (finish, handled above).
            let done = match flush {
                z::Z_NO_FLUSH => true,
                z::Z_SYNC_FLUSH => s.avail_out > 0,
                _ => false,
            };
            if s.avail_in == 0 && done {
                break;
            }
        }
        s.next_in = std::ptr::null_mut();
        s.next_out = std::ptr::null_mut();
        Ok(())
    }
}

impl Drop for RawDeflate {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised in `new` and ends once.
        unsafe {
            z::deflateEnd(&mut *self.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const LEVEL_9: Tuning = Tuning {
        good: 32,
        lazy: 258,
        nice: 258,
        chain: 4096,
    };

    fn inflate(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(raw)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn level_9_tuning_is_flate2s_level_9_byte_for_byte() {
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("<package n=\"{i}\"><v>{}</v></package>\n", i % 97).into_bytes())
            .collect();
        let mut ours = Vec::new();
        let mut d = RawDeflate::new(LEVEL_9).unwrap();
        d.write(&text, &mut ours).unwrap();
        d.finish(End::Final, &mut ours).unwrap();
        let mut theirs = Vec::with_capacity(text.len() + 1024);
        let status = flate2::Compress::new(flate2::Compression::new(9), false)
            .compress_vec(&text, &mut theirs, flate2::FlushCompress::Finish)
            .unwrap();
        assert_eq!(status, flate2::Status::StreamEnd);
        assert_eq!(ours, theirs);
        assert_eq!(inflate(&ours), text);
    }

    #[test]
    fn dictionary_and_sync_flush_continue_one_stream() {
        let a = b"primary primary primary filelists other ".repeat(3000);
        let b = b"other filelists primary ".repeat(3000);
        let mut first = Vec::new();
        let mut d = RawDeflate::new(LEVEL_9).unwrap();
        d.write(&a, &mut first).unwrap();
        d.finish(End::Sync, &mut first).unwrap();
        let mut second = Vec::new();
        let mut d = RawDeflate::new(LEVEL_9).unwrap();
        d.set_dictionary(&a[a.len() - 32 * 1024..]).unwrap();
        d.write(&b, &mut second).unwrap();
        d.finish(End::Final, &mut second).unwrap();
        first.extend(&second);
        assert_eq!(inflate(&first), [&a[..], &b[..]].concat());
    }

    #[test]
    fn key_bytes_tell_tunings_apart() {
        let short = Tuning {
            chain: 32,
            ..LEVEL_9
        };
        assert_ne!(short.key_bytes(), LEVEL_9.key_bytes());
    }
}
