"""A small document drawn with PIL, with the words and boxes that an OCR engine would give.

Notebook 07 asks a document-question-answering model about it: LayoutLM reads words and their boxes
(usually from Tesseract); because we draw the page ourselves, we know them exactly and pass them as
``word_boxes``, so no OCR engine is needed.
"""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

# The lines of the page, top to bottom; each line holds pieces of text, each as (text, x of its left
# edge in pixels), so that amounts stand in a column of their own.
INVOICE_LINES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("INVOICE No. 2041", 40),),
    (("Date: 3 March 2026", 40),),
    (("Bill to: Ada Lovelace, 12 Analytical Street", 40),),
    (("Tea, 2 boxes", 40), ("8.00", 400)),
    (("Scones, 6", 40), ("4.50", 400)),
    (("Total due (EUR)", 40), ("12.50", 400)),
)


def render_invoice(lines=INVOICE_LINES, *, size: tuple[int, int] = (520, 300), font_size: int = 22):
    """Draw `lines` on a white page; return (image, word_boxes).

    `word_boxes` lists (word, [x0, y0, x1, y1]) for every word, its box scaled to the 0-1000 grid of
    the page that LayoutLM expects, which is the form the ``document-question-answering`` pipeline of
    🤗 Transformers takes as ``word_boxes``."""
    if not lines:
        raise ValueError("render_invoice: give at least one line of text")
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    line_height = height // (len(lines) + 1)
    word_boxes = []
    for row, pieces in enumerate(lines):
        y = line_height // 2 + row * line_height
        for text, x in pieces:
            for word in text.split():
                x0, y0, x1, y1 = draw.textbbox((x, y), word, font=font)
                draw.text((x, y), word, fill="black", font=font)
                word_boxes.append((word, [round(1000 * x0 / width), round(1000 * y0 / height),
                                          round(1000 * x1 / width), round(1000 * y1 / height)]))
                x = x1 + draw.textlength(" ", font=font)
    return image, word_boxes
