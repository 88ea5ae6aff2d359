"""The words of the rendered PDF, in German and English."""

from __future__ import annotations

from typing import Final

LABELS: Final[dict[str, dict[str, str]]] = {
    "de": {
        "from": "Von",
        "to": "An",
        "cc": "Cc",
        "date": "Datum",
        "subject": "Betreff",
        "attachments": "Anlagen",
        "name": "Name",
        "type": "Typ",
        "size": "Größe",
        "embedded_note": (
            "Die Anlagen sind unverändert in diese PDF-Datei eingebettet "
            "(im PDF-Programm unter „Anlagen“ bzw. „Büroklammer“)."
        ),
        "no_text": "(Diese Nachricht enthält keinen Text.)",
        "no_subject": "(ohne Betreff)",
        "page": "Seite {page} von {pages}",
        "truncated": (
            "[Der Text ist zu lang für die Darstellung und wurde hier gekürzt. "
            "Der vollständige Text liegt als Anlage „{name}“ bei.]"
        ),
        "unrenderable": (
            "[Einige Zeichen dieser Nachricht (z. B. Schriften, die von rechts nach links "
            "laufen, oder chinesische Zeichen) können hier nicht richtig dargestellt werden. "
            "Der Originaltext liegt als Anlage „{name}“ bei.]"
        ),
        "full_text_name": "nachricht-volltext.txt",
        "fallback_name": "anlage-{n}",
        "bytes": "Bytes",
        "document_subject": "E-Mail-Nachricht",
    },
    "en": {
        "from": "From",
        "to": "To",
        "cc": "Cc",
        "date": "Date",
        "subject": "Subject",
        "attachments": "Attachments",
        "name": "Name",
        "type": "Type",
        "size": "Size",
        "embedded_note": (
            "The attachments are embedded unchanged in this PDF file "
            "(see “Attachments” or the paper clip in your PDF viewer)."
        ),
        "no_text": "(This message contains no text.)",
        "no_subject": "(no subject)",
        "page": "Page {page} of {pages}",
        "truncated": (
            "[The text is too long to be shown in full and has been cut here. "
            "The complete text is attached as “{name}”.]"
        ),
        "unrenderable": (
            "[Some characters of this message (for example right-to-left scripts or Chinese "
            "characters) cannot be shown correctly here. The original text is attached as "
            "“{name}”.]"
        ),
        "full_text_name": "message-full-text.txt",
        "fallback_name": "attachment-{n}",
        "bytes": "bytes",
        "document_subject": "E-mail message",
    },
}
