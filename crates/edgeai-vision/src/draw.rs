//! Simple drawing for annotated output images: rectangles, dots and text in a built-in
//! 5x7 bitmap font (upper-case ASCII letters, digits and a little punctuation; lower case is
//! drawn as upper case, other characters as `?`).

use crate::{BBox, Face, Image};

/// Draws a rectangle outline `thickness` pixels wide.
pub fn draw_rect(img: &mut Image, bbox: &BBox, color: [u8; 3], thickness: u32) {
    let x0 = bbox.x.round() as i64;
    let y0 = bbox.y.round() as i64;
    let x1 = (bbox.x + bbox.width).round() as i64;
    let y1 = (bbox.y + bbox.height).round() as i64;
    for t in 0..i64::from(thickness) {
        for x in x0..=x1 {
            img.put_pixel(x, y0 + t, color);
            img.put_pixel(x, y1 - t, color);
        }
        for y in y0..=y1 {
            img.put_pixel(x0 + t, y, color);
            img.put_pixel(x1 - t, y, color);
        }
    }
}

/// Draws a filled square dot of `radius` around `(x, y)`.
pub fn draw_dot(img: &mut Image, x: f32, y: f32, radius: i64, color: [u8; 3]) {
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for dy in -radius..=radius {
        for dx in -radius..=radius {
            img.put_pixel(cx + dx, cy + dy, color);
        }
    }
}

/// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale` pixels wide,
/// on a dark background box so it stays readable. Returns the text's width in pixels.
pub fn draw_text(img: &mut Image, x: i64, y: i64, text: &str, color: [u8; 3], scale: u32) -> i64 {
    let s = i64::from(scale.max(1));
    let width = text.chars().count() as i64 * 6 * s + s;
    for yy in y..y + 9 * s {
        for xx in x..x + width {
            img.put_pixel(xx, yy, [0, 0, 0]);
        }
    }
    for (i, ch) in text.chars().enumerate() {
        let rows = glyph(ch);
        let gx = x + s + i as i64 * 6 * s;
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..5 {
                if bits & (1 << (4 - c)) != 0 {
                    for py in 0..s {
                        for px in 0..s {
                            img.put_pixel(gx + c * s + px, y + s + r as i64 * s + py, color);
                        }
                    }
                }
            }
        }
    }
    width
}

/// Draws a face: its box, its five landmarks and an optional label above the box.
pub fn draw_face(img: &mut Image, face: &Face, label: Option<&str>, color: [u8; 3]) {
    let side = img.width().max(img.height());
    let thickness = (side / 400).max(2);
    draw_rect(img, &face.bbox, color, thickness);
    let marks = [
        [255, 0, 0],
        [0, 0, 255],
        [0, 255, 0],
        [255, 0, 255],
        [255, 255, 0],
    ];
    for (&(x, y), c) in face.landmarks.iter().zip(marks) {
        draw_dot(img, x, y, i64::from(thickness), c);
    }
    if let Some(text) = label {
        let scale = (side / 500).max(1);
        let y = (face.bbox.y.round() as i64 - 9 * i64::from(scale)).max(0);
        // keep the label inside the image when the face is near the right edge
        let text_width = (text.chars().count() as i64 * 6 + 1) * i64::from(scale);
        let x = (face.bbox.x.round() as i64)
            .min(i64::from(img.width()) - text_width)
            .max(0);
        draw_text(img, x, y, text, color, scale);
    }
}

fn glyph(ch: char) -> [u8; 7] {
    let up = ch.to_ascii_uppercase();
    if up == ' ' {
        return [0; 7];
    }
    FONT.iter()
        .find(|(c, _)| *c == up)
        .or_else(|| FONT.iter().find(|(c, _)| *c == '?'))
        .map(|(_, g)| *g)
        .unwrap_or([0; 7])
}

const FONT: [(char, [u8; 7]); 48] = [
    (
        '%',
        [
            0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011,
        ],
    ),
    (
        '\'',
        [
            0b00100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000,
        ],
    ),
    (
        '(',
        [
            0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010,
        ],
    ),
    (
        ')',
        [
            0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000,
        ],
    ),
    (
        ',',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000,
        ],
    ),
    (
        '-',
        [
            0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000,
        ],
    ),
    (
        '.',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100,
        ],
    ),
    (
        '/',
        [
            0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000,
        ],
    ),
    (
        '0',
        [
            0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110,
        ],
    ),
    (
        '1',
        [
            0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
    ),
    (
        '2',
        [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111,
        ],
    ),
    (
        '3',
        [
            0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110,
        ],
    ),
    (
        '4',
        [
            0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010,
        ],
    ),
    (
        '5',
        [
            0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110,
        ],
    ),
    (
        '6',
        [
            0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        '7',
        [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000,
        ],
    ),
    (
        '8',
        [
            0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        '9',
        [
            0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100,
        ],
    ),
    (
        ':',
        [
            0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000,
        ],
    ),
    (
        '=',
        [
            0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000,
        ],
    ),
    (
        '?',
        [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100,
        ],
    ),
    (
        'A',
        [
            0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
    ),
    (
        'B',
        [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110,
        ],
    ),
    (
        'C',
        [
            0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110,
        ],
    ),
    (
        'D',
        [
            0b11110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11110,
        ],
    ),
    (
        'E',
        [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111,
        ],
    ),
    (
        'F',
        [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000,
        ],
    ),
    (
        'G',
        [
            0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111,
        ],
    ),
    (
        'H',
        [
            0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
    ),
    (
        'I',
        [
            0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
    ),
    (
        'J',
        [
            0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100,
        ],
    ),
    (
        'K',
        [
            0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001,
        ],
    ),
    (
        'L',
        [
            0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111,
        ],
    ),
    (
        'M',
        [
            0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001,
        ],
    ),
    (
        'N',
        [
            0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001,
        ],
    ),
    (
        'O',
        [
            0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        'P',
        [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000,
        ],
    ),
    (
        'Q',
        [
            0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101,
        ],
    ),
    (
        'R',
        [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001,
        ],
    ),
    (
        'S',
        [
            0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110,
        ],
    ),
    (
        'T',
        [
            0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100,
        ],
    ),
    (
        'U',
        [
            0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
    ),
    (
        'V',
        [
            0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100,
        ],
    ),
    (
        'W',
        [
            0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010,
        ],
    ),
    (
        'X',
        [
            0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001,
        ],
    ),
    (
        'Y',
        [
            0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100,
        ],
    ),
    (
        'Z',
        [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111,
        ],
    ),
    (
        '_',
        [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111,
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Image {
        Image::from_rgb(40, 20, vec![255; 40 * 20 * 3]).unwrap()
    }

    #[test]
    fn text_draws_the_glyph_pixels() {
        let mut img = blank();
        let w = draw_text(&mut img, 0, 0, "I", [255, 0, 0], 1);
        assert_eq!(w, 7);
        // 'I' top row is " ### ": columns 1..=3 of the glyph, at x = 1 + 1..=3, y = 1.
        assert_eq!(img.pixel(3, 1), Some([255, 0, 0]));
        assert_eq!(img.pixel(1, 1), Some([0, 0, 0]));
        // middle column of rows 2..6 is set
        assert_eq!(img.pixel(3, 4), Some([255, 0, 0]));
        // outside the text box is untouched
        assert_eq!(img.pixel(20, 5), Some([255, 255, 255]));
        // unknown characters fall back to '?'
        assert_eq!(glyph('~'), glyph('?'));
        assert_eq!(glyph('a'), glyph('A'));
    }

    #[test]
    fn rect_outline_only() {
        let mut img = blank();
        let b = BBox {
            x: 2.0,
            y: 2.0,
            width: 10.0,
            height: 10.0,
        };
        draw_rect(&mut img, &b, [0, 255, 0], 1);
        assert_eq!(img.pixel(2, 7), Some([0, 255, 0]));
        assert_eq!(img.pixel(12, 12), Some([0, 255, 0]));
        assert_eq!(img.pixel(7, 7), Some([255, 255, 255]));
        // clipping at the border does not panic
        draw_rect(
            &mut img,
            &BBox {
                x: -5.0,
                y: -5.0,
                width: 100.0,
                height: 100.0,
            },
            [1, 1, 1],
            3,
        );
    }
}
