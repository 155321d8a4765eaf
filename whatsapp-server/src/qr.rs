//! QR images of WhatsApp Web's QR payload (the `qrcode` crate; PNG through `png`).

use qrcode::{Color, EcLevel, QrCode};
use whatsapp_core::{Error, Result};

/// Pixels per QR module in the PNG.
const SCALE: usize = 8;
/// Quiet zone around the code, in modules (the standard asks for 4).
const QUIET: usize = 4;

fn code(payload: &str) -> Result<QrCode> {
    // WhatsApp Web renders its QR with error correction L; phones read either.
    QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::L)
        .map_err(|e| Error::invalid("qr payload", format!("cannot encode as a QR code: {e}")))
}

/// An SVG image of `payload`.
pub fn svg(payload: &str) -> Result<String> {
    Ok(code(payload)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(264, 264)
        .quiet_zone(true)
        .build())
}

/// A grayscale PNG of `payload` (8 px per module, 4-module quiet zone).
pub fn png(payload: &str) -> Result<Vec<u8>> {
    let code = code(payload)?;
    let width = code.width();
    let colors = code.to_colors();
    let side = (width + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % width + QUIET, i / width + QUIET);
        for dy in 0..SCALE {
            let row = (my * SCALE + dy) * side;
            pixels[row + mx * SCALE..row + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    {
        let side = u32::try_from(side).map_err(|_| Error::invalid("qr payload", "too long"))?;
        let mut encoder = png::Encoder::new(&mut out, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| Error::Corrupt(format!("PNG encoding failed: {e}")))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| Error::Corrupt(format!("PNG encoding failed: {e}")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = "2@abc,def,ghi,jkl,1";

    #[test]
    fn png_has_the_signature_and_scaled_size() {
        let png = png(PAYLOAD).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = ::png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(info.width, info.height);
        assert_eq!(info.width as usize % SCALE, 0);
    }

    #[test]
    fn svg_is_an_svg() {
        let svg = svg(PAYLOAD).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
    }
}
