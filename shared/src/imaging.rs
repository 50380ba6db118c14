//! What the image worker does to an uploaded file, with no I/O: checks it really is the
//! image type it claims (its magic bytes, then a real decode), refuses more than
//! [`MAX_PIXELS`] from the header alone (before a pixel is decoded: a small file can
//! declare a huge image), makes a thumbnail of [`THUMBNAIL_EDGE`] px on its long edge, and
//! removes the original's metadata (EXIF, XMP, IPTC, comments: a phone photo's GPS position
//! must not be published): a JPEG is encoded again from its upright pixels, a PNG or WebP
//! keeps only its image and colour chunks and its orientation.
//!
//! Decoding and encoding are the `image` crate's; resizing is `fast_image_resize`'s
//! (SIMD convolution, several times faster than `image`'s own resize: `bench thumbnail`
//! measures both); the chunk surgery on PNG and WebP is `img-parts`'.

use std::io::Cursor;

use bytes::Bytes;
use fast_image_resize::images::Image as ResizeBuffer;
use fast_image_resize::{IntoImageView as _, ResizeOptions, Resizer};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder as _, ImageEncoder as _, ImageFormat, ImageReader};
use img_parts::{ImageEXIF as _, ImageICC as _};

/// The prefix of every upload's key (the bucket's notification and lifecycle rules filter
/// on it; nothing under it is ever served).
pub const UPLOADS_PREFIX: &str = "uploads/";
/// The prefix of every served image object (an original or a thumbnail).
pub const IMAGES_PREFIX: &str = "images/";

/// The most pixels an image may have (width × height): 40 megapixels.
pub const MAX_PIXELS: u64 = 40_000_000;
/// The long edge of a thumbnail, in pixels.
pub const THUMBNAIL_EDGE: u32 = 256;
/// The largest upload accepted: 10 MiB.
pub const MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;
/// What decoding may allocate at most: a 40-megapixel image of 16 bits a channel with
/// alpha (8 bytes a pixel), and some room.
const MAX_DECODE_ALLOC: u64 = 8 * MAX_PIXELS + 64 * 1024 * 1024;
/// JPEG thumbnails' quality.
const JPEG_QUALITY: u8 = 85;
/// The quality a JPEG original is encoded again at.
const ORIGINAL_JPEG_QUALITY: u8 = 90;

/// The image types a product image may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Webp,
}

impl Kind {
    /// The kind a `Content-Type` names, if it is one of the three.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type {
            "image/jpeg" => Some(Self::Jpeg),
            "image/png" => Some(Self::Png),
            "image/webp" => Some(Self::Webp),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
            Self::Webp => ImageFormat::WebP,
        }
    }
}

/// An upload that passed: its size as displayed, its original without metadata, and its
/// thumbnail (same type as the original).
#[derive(Debug)]
pub struct Processed {
    pub width: u32,
    pub height: u32,
    pub original: Bytes,
    pub thumbnail: Vec<u8>,
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
}

/// Why an upload is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the file is not a {claimed} image (its bytes say {found})")]
    NotTheClaimedType {
        claimed: &'static str,
        found: String,
    },
    #[error("the image is {width}x{height}, over the limit of {MAX_PIXELS} pixels")]
    TooManyPixels { width: u32, height: u32 },
    #[error("the file is over {MAX_UPLOAD_BYTES} bytes")]
    TooLarge,
    #[error("the image does not decode: {0}")]
    Undecodable(String),
}

/// Checks, thumbnails and strips an upload that claims to be `claimed`.
pub fn process(bytes: Bytes, claimed: Kind) -> Result<Processed, Refusal> {
    if bytes.len() as u64 > MAX_UPLOAD_BYTES {
        return Err(Refusal::TooLarge);
    }
    let found = image::guess_format(&bytes).ok();
    if found != Some(claimed.format()) {
        return Err(Refusal::NotTheClaimedType {
            claimed: claimed.content_type(),
            found: found.map_or_else(|| "no image type".to_owned(), |f| format!("{f:?}")),
        });
    }
    let (mut image, orientation) = decode(&bytes, claimed)?;
    image.apply_orientation(orientation);
    let (width, height) = (image.width(), image.height());
    let (thumbnail, thumbnail_width, thumbnail_height) = thumbnail(&image, claimed)?;
    let original = match claimed {
        Kind::Jpeg => reencoded_jpeg(&bytes, &image)?,
        Kind::Png | Kind::Webp => strip_metadata(bytes, claimed, orientation)?,
    };
    drop(image);
    Ok(Processed {
        width,
        height,
        original,
        thumbnail,
        thumbnail_width,
        thumbnail_height,
    })
}

/// Reads the header, refuses an image of more than [`MAX_PIXELS`], then decodes it whole
/// (under an allocation limit, as a second guard).
fn decode(bytes: &[u8], kind: Kind) -> Result<(DynamicImage, Orientation), Refusal> {
    let undecodable = |e: image::ImageError| Refusal::Undecodable(e.to_string());
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(Refusal::Undecodable("the image has no pixels".into()));
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(Refusal::TooManyPixels { width, height });
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    Ok((image, orientation))
}

/// The size of a thumbnail of a `width` × `height` image: [`THUMBNAIL_EDGE`] on the long
/// edge, the short one in proportion (at least 1); an image already that small keeps its
/// size (a thumbnail is never an enlargement).
pub fn thumbnail_size(width: u32, height: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= THUMBNAIL_EDGE {
        return (width, height);
    }
    let scale = |edge: u32| {
        let scaled =
            (u64::from(edge) * u64::from(THUMBNAIL_EDGE) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(scaled).unwrap_or(THUMBNAIL_EDGE).max(1)
    };
    (scale(width), scale(height))
}

/// Resizes with `fast_image_resize` (Lanczos3) and encodes in the original's type.
fn thumbnail(image: &DynamicImage, kind: Kind) -> Result<(Vec<u8>, u32, u32), Refusal> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| Refusal::Undecodable(format!("{what}: {e}"));
    // Eight bits a channel, with alpha only where the image has it (JPEG has none).
    let source = if image.color().has_alpha() && kind != Kind::Jpeg {
        DynamicImage::ImageRgba8(image.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.to_rgb8())
    };
    let (width, height) = thumbnail_size(source.width(), source.height());
    let pixel_type = source
        .pixel_type()
        .ok_or_else(|| Refusal::Undecodable("an unsupported pixel type".into()))?;
    let mut resized = ResizeBuffer::new(width, height, pixel_type);
    Resizer::new()
        .resize(&source, &mut resized, &ResizeOptions::new())
        .map_err(|e| failed("resizing", &e))?;
    let color = source.color().into();
    let mut out = Vec::new();
    let written = match kind {
        Kind::Jpeg => JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).write_image(
            resized.buffer(),
            width,
            height,
            color,
        ),
        Kind::Png => PngEncoder::new(&mut out).write_image(resized.buffer(), width, height, color),
        Kind::Webp => {
            WebPEncoder::new_lossless(&mut out).write_image(resized.buffer(), width, height, color)
        }
    };
    written.map_err(|e| failed("encoding the thumbnail", &e))?;
    Ok((out, width, height))
}

/// A JPEG original encoded again from its decoded, upright pixels, with its colour profile
/// and nothing else. A JPEG can hide metadata where a lossless strip cannot reach it
/// (segments between the scans of a progressive JPEG, bytes after its end, a thumbnail
/// inside its JFIF header), so it is rebuilt from the pixels; one generation at quality 90
/// is invisible in a product photo.
fn reencoded_jpeg(upload: &Bytes, image: &DynamicImage) -> Result<Bytes, Refusal> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| Refusal::Undecodable(format!("{what}: {e}"));
    let icc = img_parts::jpeg::Jpeg::from_bytes(upload.clone())
        .ok()
        .and_then(|jpeg| jpeg.icc_profile());
    let rgb = image.to_rgb8();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, ORIGINAL_JPEG_QUALITY)
        .write_image(
            rgb.as_raw(),
            rgb.width(),
            rgb.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| failed("encoding the original", &e))?;
    if icc.is_none() {
        return Ok(Bytes::from(out));
    }
    let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(Bytes::from(out))
        .map_err(|e| failed("reading the encoded original", &e))?;
    jpeg.set_icc_profile(icc);
    Ok(jpeg.encoder().bytes())
}

/// The PNG chunks an original keeps: the image, its palette and transparency, colour
/// information, pixel density and animation. Anything else (text, time, EXIF, vendor
/// chunks) is dropped, and so is anything after `IEND`.
const PNG_CHUNKS: [&[u8; 4]; 15] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
    b"cICP", b"pHYs", b"acTL", b"fcTL", b"fdAT",
];

/// The WebP chunks an original keeps: the bitstream, alpha, colour profile and animation.
const WEBP_CHUNKS: [&[u8; 4]; 7] = [
    b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ICCP", b"ANIM", b"ANMF",
];

/// A PNG or WebP original without its metadata, bit for bit otherwise (no re-encoding, so
/// no loss): only the chunks in [`PNG_CHUNKS`] or [`WEBP_CHUNKS`] are kept. The
/// orientation, when the image has one, is kept as the only EXIF field, so the original
/// still shows the right way up.
pub fn strip_metadata(
    bytes: Bytes,
    kind: Kind,
    orientation: Orientation,
) -> Result<Bytes, Refusal> {
    let failed = |e: img_parts::Error| Refusal::Undecodable(format!("reading its metadata: {e}"));
    let exif = (orientation != Orientation::NoTransforms).then(|| orientation_exif(orientation));
    let stripped = match kind {
        Kind::Png => {
            let mut png = img_parts::png::Png::from_bytes(bytes).map_err(failed)?;
            png.chunks_mut()
                .retain(|chunk| PNG_CHUNKS.contains(&&chunk.kind()));
            // Right after the header: an orientation after the image data is one that
            // decoders and browsers may never read.
            if let Some(exif) = exif {
                let chunk = img_parts::png::PngChunk::new(*b"eXIf", exif);
                png.chunks_mut().insert(1, chunk);
            }
            png.encoder().bytes()
        }
        Kind::Webp => {
            let mut webp = img_parts::webp::WebP::from_bytes(bytes).map_err(failed)?;
            webp.chunks_mut()
                .retain(|chunk| WEBP_CHUNKS.contains(&&chunk.id()));
            // Last: it also sets the container's flags to the chunks that remain.
            webp.set_exif(exif);
            webp.encoder().bytes()
        }
        Kind::Jpeg => {
            return Err(Refusal::Undecodable(
                "a JPEG original is encoded again, not stripped".into(),
            ))
        }
    };
    Ok(stripped)
}

/// A minimal EXIF block (TIFF, little-endian) holding one field: the orientation.
fn orientation_exif(orientation: Orientation) -> Bytes {
    let mut tiff = Vec::with_capacity(26);
    tiff.extend_from_slice(b"II*\0"); // little-endian TIFF
    tiff.extend_from_slice(&8u32.to_le_bytes()); // the first IFD follows the header
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // one value
    tiff.extend_from_slice(&u16::from(orientation.to_exif()).to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // padding of the value field
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no further IFD
    Bytes::from(tiff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb, Rgba};

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = ImageBuffer::from_fn(width, height, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(
                image.as_raw(),
                width,
                height,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image =
            ImageBuffer::from_fn(width, height, |x, _| Rgba([(x % 256) as u8, 10, 20, 128]));
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(
                image.as_raw(),
                width,
                height,
                image::ExtendedColorType::Rgba8,
            )
            .unwrap();
        out
    }

    /// A JPEG with an EXIF block holding a GPS position (and an orientation of 6, "rotate 90").
    fn jpeg_with_gps() -> Vec<u8> {
        // TIFF: IFD0 with Orientation=6 and a GPS IFD pointer; the GPS IFD with GPSLatitudeRef.
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"II*\0");
        tiff.extend_from_slice(&8u32.to_le_bytes());
        tiff.extend_from_slice(&2u16.to_le_bytes());
        tiff.extend_from_slice(&0x0112u16.to_le_bytes());
        tiff.extend_from_slice(&3u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&6u32.to_le_bytes());
        tiff.extend_from_slice(&0x8825u16.to_le_bytes()); // GPSInfo
        tiff.extend_from_slice(&4u16.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&38u32.to_le_bytes());
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&0x0001u16.to_le_bytes()); // GPSLatitudeRef
        tiff.extend_from_slice(&2u16.to_le_bytes());
        tiff.extend_from_slice(&2u32.to_le_bytes());
        tiff.extend_from_slice(b"N\0\0\0");
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(b"GPS-SECRET-51.5N");
        let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(Bytes::from(jpeg(400, 300))).unwrap();
        jpeg.set_exif(Some(Bytes::from(tiff)));
        jpeg.encoder().bytes().to_vec()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_jpeg_gets_a_256px_thumbnail_and_its_true_size() {
        let done = process(Bytes::from(jpeg(1200, 800)), Kind::Jpeg).unwrap();
        assert_eq!((done.width, done.height), (1200, 800));
        assert_eq!((done.thumbnail_width, done.thumbnail_height), (256, 171));
        let thumb = image::load_from_memory(&done.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (256, 171));
        assert_eq!(
            image::guess_format(&done.thumbnail).unwrap(),
            ImageFormat::Jpeg
        );
    }

    #[test]
    fn a_png_keeps_its_alpha_and_a_small_image_is_not_enlarged() {
        let done = process(Bytes::from(png(100, 40)), Kind::Png).unwrap();
        let thumb = image::load_from_memory(&done.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (100, 40));
        assert!(thumb.color().has_alpha());
    }

    #[test]
    fn a_file_that_lies_about_its_type_is_refused() {
        let refused = process(Bytes::from(png(10, 10)), Kind::Jpeg).unwrap_err();
        assert!(
            matches!(refused, Refusal::NotTheClaimedType { .. }),
            "{refused}"
        );
        let text =
            process(Bytes::from_static(b"<html>not an image</html>"), Kind::Png).unwrap_err();
        assert!(matches!(text, Refusal::NotTheClaimedType { .. }));
        // The right magic bytes, then garbage: the decode finds it out.
        let mut truncated = jpeg(64, 64);
        truncated.truncate(40);
        assert!(matches!(
            process(Bytes::from(truncated), Kind::Jpeg).unwrap_err(),
            Refusal::Undecodable(_)
        ));
    }

    #[test]
    fn an_image_over_forty_megapixels_is_refused_from_its_header_alone() {
        // A PNG header declaring 8000 x 6000 (48 MP) with no pixel data behind it: refused
        // before any decoding is attempted, whatever the rest of the file holds.
        let mut header = png(1, 1);
        header[16..20].copy_from_slice(&8000u32.to_be_bytes());
        header[20..24].copy_from_slice(&6000u32.to_be_bytes());
        let crc = crc32fast::hash(&header[12..29]);
        header[29..33].copy_from_slice(&crc.to_be_bytes());
        let refused = process(Bytes::from(header), Kind::Png).unwrap_err();
        assert_eq!(
            refused,
            Refusal::TooManyPixels {
                width: 8000,
                height: 6000
            }
        );
    }

    #[test]
    fn a_jpeg_original_loses_its_gps_position_and_is_stored_upright() {
        let mut upload = jpeg_with_gps();
        // A polyglot's tail after the end of the image.
        upload.extend_from_slice(b"TRAILING-SECRET");
        assert!(contains(&upload, b"GPS-SECRET"));
        let done = process(Bytes::from(upload), Kind::Jpeg).unwrap();
        assert!(!contains(&done.original, b"GPS-SECRET"), "no GPS left");
        assert!(
            !contains(&done.original, b"TRAILING-SECRET"),
            "nothing after the image"
        );
        let kept = img_parts::jpeg::Jpeg::from_bytes(done.original.clone()).unwrap();
        assert!(
            kept.exif().is_none(),
            "no EXIF at all: the pixels are upright"
        );
        // Rotated 90 degrees: displayed 300 wide and 400 high, stored so, and so is the
        // thumbnail.
        assert_eq!((done.width, done.height), (300, 400));
        let original = image::load_from_memory(&done.original).unwrap();
        assert_eq!((original.width(), original.height()), (300, 400));
        assert_eq!((done.thumbnail_width, done.thumbnail_height), (192, 256));
    }

    #[test]
    fn a_png_original_keeps_only_its_image_chunks_and_its_orientation() {
        let mut parts = img_parts::png::Png::from_bytes(Bytes::from(png(30, 20))).unwrap();
        // Before the image data, where decoders and browsers read them.
        let exif = orientation_exif(Orientation::Rotate180).to_vec();
        for (kind, data) in [
            (*b"tEXt", b"Comment\0GPS-SECRET".to_vec()),
            (*b"caBX", b"VENDOR-SECRET".to_vec()),
            (*b"eXIf", exif),
        ] {
            let chunk = img_parts::png::PngChunk::new(kind, Bytes::from(data));
            parts.chunks_mut().insert(1, chunk);
        }
        let mut upload = parts.encoder().bytes().to_vec();
        upload.extend_from_slice(b"TRAILING-SECRET");
        let done = process(Bytes::from(upload), Kind::Png).unwrap();
        for secret in [&b"GPS-SECRET"[..], b"VENDOR-SECRET", b"TRAILING-SECRET"] {
            assert!(!contains(&done.original, secret));
        }
        let kept = img_parts::png::Png::from_bytes(done.original.clone()).unwrap();
        let exif = kept.exif().expect("the orientation");
        assert_eq!(exif.len(), 26, "the orientation alone");
        assert_eq!(
            Orientation::from_exif_chunk(&exif),
            Some(Orientation::Rotate180)
        );
        assert!(image::load_from_memory(&done.original).is_ok());
    }

    #[test]
    fn thumbnail_sizes_keep_the_proportions() {
        assert_eq!(thumbnail_size(4000, 3000), (256, 192));
        assert_eq!(thumbnail_size(3000, 4000), (192, 256));
        assert_eq!(thumbnail_size(10000, 10), (256, 1));
        assert_eq!(thumbnail_size(256, 256), (256, 256));
    }
}
