"""HTML bodies as the message page shows them: nothing that runs, loads or navigates survives
nh3; the text and its structure do."""

from __future__ import annotations

import pytest

from siegel.plugins.postbox.portal_html import had_images, sanitise

ATTACKS = [
    '<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '<svg onload=alert(1)>',
    '<a href="javascript:alert(1)">x</a>', '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>', '<iframe src="https://x"></iframe>',
    '<object data="x.swf"></object>', '<embed src="x">', '<form action="https://evil"><input>'
    '<button>x</button></form>', '<p style="background:url(https://tracker/x)">x</p>',
    '<style>@import "https://tracker/x.css";</style>', '<meta http-equiv="refresh" content="0">',
    '<base href="https://evil/">', '<link rel=stylesheet href="https://tracker/x.css">',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>', '<body onload=alert(1)>',
    '<div id="main" class="button">x</div>', '<a href="/t/test/postbox/bin">x</a>',
    '<img src="https://tracker.example/pixel.gif">', '<video src=x onerror=alert(1)>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
]
FORBIDDEN = ("<script", "onerror", "onload", "javascript:", "<iframe", "<object", "<embed",
             "<form", "<input", "<button", "style=", "<style", "<meta", "<base", "<link",
             "<img", "<svg", "data:", "id=", "class=", "href=\"/", "<video", "tracker")


@pytest.mark.parametrize("attack", ATTACKS)
def test_nothing_active_survives(attack: str) -> None:
    cleaned = sanitise(attack).lower()
    assert not [f for f in FORBIDDEN if f in cleaned], cleaned


def test_text_structure_and_safe_links_stay() -> None:
    cleaned = sanitise('<html><head><title>T</title></head><body><h1>Bescheid</h1>'
                       '<p>Sehr <b>geehrte</b> Frau M&uuml;ller,</p><ul><li>eins</li></ul>'
                       '<table><tr><th scope="col">A</th></tr><tr><td>1</td></tr></table>'
                       '<a href="https://www.behoerde.example/info">Info</a> '
                       '<a href="mailto:amt@behoerde.example">Mail</a></body></html>')
    assert "Bescheid" in cleaned and "<h1" not in cleaned and ">T<" not in cleaned
    assert "<p>Sehr <b>geehrte</b> Frau Müller,</p>" in cleaned
    assert "<li>eins</li>" in cleaned and '<th scope="col">A</th>' in cleaned
    assert ('<a href="https://www.behoerde.example/info" rel="noopener noreferrer nofollow">'
            "Info</a>") in cleaned
    assert 'href="mailto:amt@behoerde.example"' in cleaned


def test_removed_images_are_noticed() -> None:
    assert had_images('<p>x<IMG src="https://t/x.gif"></p>')
    assert not had_images("<p>image</p>")
