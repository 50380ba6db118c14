//! `cargo run --release -p storefront-tests --bin bench-thumbnail -- [--runs 5]`: what the
//! image worker costs on one photo: the whole check (`storefront::imaging::process`:
//! header, decode, orientation, thumbnail, metadata strip) on a 4000x3000 JPEG, the resize
//! step alone with `fast_image_resize` (what the worker uses) against `image`'s own
//! `resize`, and the process's peak memory (VmHWM) after each case, run in a fresh child
//! process so one case's peak does not hide the next's. The table goes to stdout.

use std::io::Cursor;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use fast_image_resize::images::Image as ResizeBuffer;
use fast_image_resize::{IntoImageView as _, ResizeOptions, Resizer};
use image::ImageEncoder as _;
use storefront::imaging::{self, Kind};

/// A photo-like JPEG (smooth gradients with fine detail, so it compresses as photos do).
fn photo(width: u32, height: u32, quality: u8) -> Result<Vec<u8>> {
    let image = image::ImageBuffer::from_fn(width, height, |x, y| {
        let noise = ((x.wrapping_mul(7919) ^ y.wrapping_mul(104_729)) % 32) as u8;
        image::Rgb([
            ((x * 255 / width) as u8).wrapping_add(noise),
            ((y * 255 / height) as u8).wrapping_add(noise / 2),
            (((x + y) % 256) as u8) / 2 + noise,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality).write_image(
        image.as_raw(),
        width,
        height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// The peak resident memory of this process so far, in MiB.
fn peak_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM")?;
    Ok(kib / 1024.0)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The photo a case reads: 4000x3000 (12 MP) at quality 88, or 7300x5479 (40 MP, the
/// limit) at quality 60 to fit in an upload's 10 MiB.
fn size_of(name: &str) -> (u32, u32, u8) {
    match name {
        "process-40mp" => (7300, 5479, 60),
        _ => (4000, 3000, 88),
    }
}

/// Runs one case `runs` times in this process, on the photo at `path`, and prints its row.
fn case(name: &str, runs: usize, path: &str) -> Result<()> {
    let (width, height, _) = size_of(name);
    let jpeg = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let before = peak_mib()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        match name {
            "process" | "process-40mp" => {
                let done = imaging::process(Bytes::from(jpeg.clone()), Kind::Jpeg)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                assert_eq!(done.thumbnail_width.max(done.thumbnail_height), 256);
            }
            "decode" => {
                image::ImageReader::with_format(Cursor::new(&jpeg), image::ImageFormat::Jpeg)
                    .decode()?;
            }
            "resize-fast" | "resize-image-lanczos3" | "resize-image-triangle" => {
                let decoded = image::load_from_memory(&jpeg)?;
                let (w, h) = imaging::thumbnail_size(width, height);
                let started = Instant::now();
                match name {
                    "resize-fast" => {
                        let mut out =
                            ResizeBuffer::new(w, h, decoded.pixel_type().context("pixel type")?);
                        Resizer::new().resize(&decoded, &mut out, &ResizeOptions::new())?;
                    }
                    "resize-image-lanczos3" => {
                        std::hint::black_box(decoded.resize_exact(
                            w,
                            h,
                            image::imageops::FilterType::Lanczos3,
                        ));
                    }
                    _ => {
                        std::hint::black_box(decoded.resize_exact(
                            w,
                            h,
                            image::imageops::FilterType::Triangle,
                        ));
                    }
                }
                times.push(started.elapsed());
                continue;
            }
            other => bail!("no case {other}"),
        }
        times.push(started.elapsed());
    }
    println!(
        "| {name} | {width}x{height}, {:.1} MiB | {:.1} ms | {:.0} MiB | {:.0} MiB |",
        jpeg.len() as f64 / 1_048_576.0,
        median(times).as_secs_f64() * 1000.0,
        peak_mib()?,
        before
    );
    Ok(())
}

const CASES: [&str; 6] = [
    "decode",
    "resize-fast",
    "resize-image-lanczos3",
    "resize-image-triangle",
    "process",
    "process-40mp",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 5usize;
    let mut only = None;
    let mut path = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => {
                runs = args.get(i + 1).context("--runs N")?.parse()?;
                i += 1;
            }
            "--case" => {
                only = Some(args.get(i + 1).context("--case NAME")?.clone());
                i += 1;
            }
            "--photo" => {
                path = Some(args.get(i + 1).context("--photo PATH")?.clone());
                i += 1;
            }
            other => bail!("unknown argument {other}; usage: bench-thumbnail [--runs N]"),
        }
        i += 1;
    }
    if let (Some(name), Some(path)) = (&only, &path) {
        return case(name, runs.max(1), path);
    }
    let dir = tempfile::tempdir()?;
    println!("| case | photo | median | peak RSS | RSS before |");
    println!("|---|---|--:|--:|--:|");
    let exe = std::env::current_exe()?;
    for name in CASES {
        let (width, height, quality) = size_of(name);
        let photo_path = dir.path().join(format!("{width}x{height}.jpg"));
        if !photo_path.exists() {
            std::fs::write(&photo_path, photo(width, height, quality)?)?;
        }
        eprintln!("bench-thumbnail: {name} ({runs} runs, fresh process)");
        let status = std::process::Command::new(&exe)
            .args(["--case", name, "--runs", &runs.to_string(), "--photo"])
            .arg(&photo_path)
            .status()
            .with_context(|| format!("running case {name}"))?;
        if !status.success() {
            bail!("case {name} failed: {status}");
        }
    }
    Ok(())
}
