"""The readable PDF summary of a data-subject export (app.subject_data.export writes it beside the exact JSON).

Its own module so that only an export imports fpdf (~0.4 s of every process start otherwise).
"""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from fpdf.enums import WrapMode, XPos, YPos
from fpdf.fonts import TTFFont

# DejaVu Sans (vendored, licence beside it): Latin, Greek and Cyrillic scripts print as they are
# (Łukasz, Ελένη, Ольга); the PDF core fonts are Latin-1 only.
FONTS = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVu"


class Summary(FPDF):
    """The summary's pages: DejaVu Sans (regular and bold), a page number in each footer."""

    def __init__(self) -> None:
        super().__init__()
        self.add_font(FONT, "", FONTS / "DejaVuSans.ttf")
        self.add_font(FONT, "B", FONTS / "DejaVuSans-Bold.ttf")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=8)
        self.cell(0, 8, f"Page {self.page_no()}", align="C")

    def text_block(self, height: int, text: str | None) -> None:
        """A block of text, back to the left margin after it; a character the font lacks prints as "?"."""
        font = self.current_font
        assert isinstance(font, TTFFont)  # set_font(FONT) came first
        cmap = font.cmap
        printable = "".join(ch if ord(ch) in cmap else "?" for ch in (text or ""))
        # Lines break between words (a word longer than the line, such as a long address, is split where it must be).
        self.multi_cell(0, height, printable, new_x=XPos.LMARGIN, new_y=YPos.NEXT, wrapmode=WrapMode.WORD)
