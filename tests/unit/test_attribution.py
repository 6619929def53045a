"""Quoted-reply attribution lines in the languages the relay's users write: the name a mail client
wrote into them becomes the public name; a name the person typed themselves stays (pure)."""

from __future__ import annotations

import time
from html import escape

import pytest

from relay.core import attribution
from tests.helpers.corpus import CORPUS, SKIP_REASON

PUBLIC = "R. P."


def plain(text: str, name: str) -> str:
    return attribution.replace_in_plain(text, [name], PUBLIC)


def html(source: str, name: str) -> str:
    return attribution.replace_in_html(source, [name], PUBLIC)


def gmail_html(line: str, quoted: str) -> str:
    return f'<div dir="ltr">Danke</div><div class="gmail_attr">{escape(line)}<br></div><blockquote>{quoted}</blockquote>'


# (name, attribution line as the client writes it, the same line with the public name)
ATTRIBUTIONS = [
    # Polish: Thunderbird, Gmail, older clients
    ("Jan Kowalski", "W dniu 02.03.2026 o 10:00, Jan Kowalski pisze:", "W dniu 02.03.2026 o 10:00, R. P. pisze:"),
    ("Jan Kowalski", "pon., 2 mar 2026 o 10:00 Jan Kowalski <jan@example.pl> napisał(a):",
     "pon., 2 mar 2026 o 10:00 R. P. <jan@example.pl> napisał(a):"),
    ("Anna Nowak", "Dnia 2 mar 2026 o godz. 10:00 Anna Nowak <anna@example.pl> napisała:",
     "Dnia 2 mar 2026 o godz. 10:00 R. P. <anna@example.pl> napisała:"),
    ("Jan Kowalski", "2 mar 2026 10:00 \"Jan Kowalski\" <jan@example.pl> napisał:",
     "2 mar 2026 10:00 \"R. P.\" <jan@example.pl> napisał:"),
    # Swedish, Danish, Norwegian
    ("Anna Svensson", "Den mån 2 mars 2026 kl 10:00 skrev Anna Svensson <anna@example.se>:",
     "Den mån 2 mars 2026 kl 10:00 skrev R. P. <anna@example.se>:"),
    ("Anne Jørgensen", "Den 2. mar. 2026 kl. 10.00 skrev Anne Jørgensen <anne@example.dk>:",
     "Den 2. mar. 2026 kl. 10.00 skrev R. P. <anne@example.dk>:"),
    ("Ola Nordmann", "man. 2. mar. 2026 kl. 10:00 skrev Ola Nordmann <ola@example.no>:",
     "man. 2. mar. 2026 kl. 10:00 skrev R. P. <ola@example.no>:"),
    # Portuguese
    ("Ana Souza", "Em seg., 2 de mar. de 2026 às 10:00, Ana Souza <ana@example.pt> escreveu:",
     "Em seg., 2 de mar. de 2026 às 10:00, R. P. <ana@example.pt> escreveu:"),
    ("João Conceição", "No dia 2 de mar. de 2026, às 10:00, João Conceição <joao@example.pt> escreveu:",
     "No dia 2 de mar. de 2026, às 10:00, R. P. <joao@example.pt> escreveu:"),
    # Czech
    ("Jan Novák", "Dne 02.03.2026 v 10:00 Jan Novák napsal(a):", "Dne 02.03.2026 v 10:00 R. P. napsal(a):"),
    ("Jan Novák", "po 2. 3. 2026 v 10:00 odesílatel Jan Novák <jan@example.cz> napsal:",
     "po 2. 3. 2026 v 10:00 odesílatel R. P. <jan@example.cz> napsal:"),
    ("Eva Dvořáková", "Dne 2. 3. 2026 10:00 Eva Dvořáková napsala:", "Dne 2. 3. 2026 10:00 R. P. napsala:"),
    # Turkish
    ("Ayşe Yılmaz", "Ayşe Yılmaz <ayse@example.com.tr>, 2 Mar 2026 Pzt, 10:00 tarihinde şunu yazdı:",
     "R. P. <ayse@example.com.tr>, 2 Mar 2026 Pzt, 10:00 tarihinde şunu yazdı:"),
    # the six languages there before
    ("Maximilian Mueller", "On Mon, 2 Mar 2026 at 10:00, Maximilian Mueller <max@example.de> wrote:",
     "On Mon, 2 Mar 2026 at 10:00, R. P. <max@example.de> wrote:"),
    ("Maximilian Mueller", "Am 02.03.2026 um 10:00 schrieb Maximilian Mueller <max@example.de>:",
     "Am 02.03.2026 um 10:00 schrieb R. P. <max@example.de>:"),
    ("Maximilian Mueller", "Le lun. 2 mars 2026 à 10:00, Maximilian Mueller <max@example.de> a écrit :",
     "Le lun. 2 mars 2026 à 10:00, R. P. <max@example.de> a écrit :"),
    ("Sam Saffron", "---- On Tue, 22 Dec 2015 14:17:36 +0530 Sam Saffron <sam@example.org> wrote ----",
     "---- On Tue, 22 Dec 2015 14:17:36 +0530 R. P. <sam@example.org> wrote ----"),
]


@pytest.mark.parametrize(("name", "line", "expected"), ATTRIBUTIONS)
def test_attribution_lines_get_the_public_name(name: str, line: str, expected: str) -> None:
    assert attribution.is_attribution(line)
    assert plain(line, name) == expected
    assert plain("Dziękuję, tak.\n\n> " + line + "\n>> tekst", name) == "Dziękuję, tak.\n\n> " + expected + "\n>> tekst"


@pytest.mark.parametrize(("name", "line", "expected"), ATTRIBUTIONS)
def test_attribution_lines_in_html_get_the_public_name(name: str, line: str, expected: str) -> None:
    # the name in the quoted text is not in an attribution: it stays
    assert html(gmail_html(line, name), name) == gmail_html(expected, name)


@pytest.mark.parametrize("block", [
    "Od: Jan Kowalski <jan@example.pl>\nWysłano: poniedziałek, 2 marca 2026 10:00\nDo: Sklep <sklep@example.pl>\n"
    "DW: Jan Kowalski\nTemat: Zamówienie",
    "Från: Anna Svensson <anna@example.se>\nSkickat: den 2 mars 2026 10:00\nTill: Anna Svensson\nKopia: Anna Svensson\n"
    "Ämne: Beställning",
    "Fra: Anne Jørgensen <anne@example.dk>\nSendt: 2. marts 2026 10:00\nTil: Anne Jørgensen\nEmne: Ordre",
    "De: Ana Souza <ana@example.pt>\nEnviado: segunda-feira, 2 de março de 2026 10:00\nPara: Ana Souza\n"
    "Assunto: Pedido\nData: 2 de março de 2026",
    "Od: Jan Novák <jan@example.cz>\nOdesláno: 2. března 2026 10:00\nKomu: Jan Novák\nPředmět: Objednávka",
    "Kimden: Ayşe Yılmaz <ayse@example.com.tr>\nGönderildi: 2 Mart 2026 Pazartesi 10:00\nKime: Ayşe Yılmaz\n"
    "Konu: Sipariş",
])
def test_outlook_header_blocks(block: str) -> None:
    name = block.split(": ", 1)[1].split(" <", maxsplit=1)[0]
    out = plain(block, name)
    assert name not in out and out.count(PUBLIC) == block.count(name)
    assert out.split("\n")[1] == block.split("\n")[1]  # the date line has no name: untouched
    fields = [line.split(": ", 1) for line in block.split("\n")]
    source = "".join(f"<p><b>{field}:</b> {escape(value)}</p>" for field, value in fields)
    assert html(source, name) == source.replace(name, PUBLIC)


def test_outlook_writes_the_name_last_name_first() -> None:
    assert plain("Od: Kowalski, Jan <jan@example.pl>", "Jan Kowalski") == f"Od: {PUBLIC} <jan@example.pl>"
    assert plain("Kimden: Yılmaz Ayşe", "Ayşe Yılmaz") == f"Kimden: {PUBLIC}"


@pytest.mark.parametrize(("name", "text", "expected"), [
    # the name wrapped in the middle
    ("Jan Kowalski", "pon., 2 mar 2026 o 10:00 Jan\nKowalski <jan@example.pl> napisał(a):",
     "pon., 2 mar 2026 o 10:00 R. P. <jan@example.pl> napisał(a):"),
    ("Jan Kowalski", "> W dniu 02.03.2026 o 10:00, Jan\n> Kowalski pisze:", "> W dniu 02.03.2026 o 10:00, R. P. pisze:"),
    ("Ana Souza", "Em seg., 2 de mar. de 2026 às 10:00, Ana\nSouza <ana@example.pt> escreveu:",
     "Em seg., 2 de mar. de 2026 às 10:00, R. P. <ana@example.pt> escreveu:"),
    ("Jan Novák", ">> po 2. 3. 2026 v 10:00 odesílatel Jan\n>> Novák <jan@example.cz> napsal:",
     ">> po 2. 3. 2026 v 10:00 odesílatel R. P. <jan@example.cz> napsal:"),
    ("Anna Svensson", "man. 2. mar. 2026 kl. 10:00 skrev Anna\nSvensson <anna@example.se>:",
     "man. 2. mar. 2026 kl. 10:00 skrev R. P. <anna@example.se>:"),
    # the whole name on the first line, the address or the "wrote" word on the next
    ("Ana Souza", "Em seg., 2 de mar. de 2026 às 10:00, Ana Souza <\nana@example.pt> escreveu:",
     "Em seg., 2 de mar. de 2026 às 10:00, R. P. <\nana@example.pt> escreveu:"),
    ("Jan Kowalski", "W dniu 02.03.2026 o 10:00, Jan Kowalski\npisze:", "W dniu 02.03.2026 o 10:00, R. P.\npisze:"),
    ("Jan Novák", "Dne 02.03.2026 v 10:00 Jan Novák <jan@example.cz>\nnapsal(a):",
     "Dne 02.03.2026 v 10:00 R. P. <jan@example.cz>\nnapsal(a):"),
    ("Ayşe Yılmaz", "Ayşe Yılmaz <ayse@example.com.tr>, 2 Mar 2026 Pzt, 10:00 tarihinde\nşunu yazdı:",
     "R. P. <ayse@example.com.tr>, 2 Mar 2026 Pzt, 10:00 tarihinde\nşunu yazdı:"),
    ("Anna Svensson", "Den mån 2 mars 2026 kl 10:00 skrev\nAnna Svensson <anna@example.se>:",
     "Den mån 2 mars 2026 kl 10:00 skrev\nR. P. <anna@example.se>:"),
    ("Maximilian Mueller", "Am 02.03.2026 um 10:00 schrieb Maximilian Mueller\n<max@example.de>:",
     "Am 02.03.2026 um 10:00 schrieb R. P.\n<max@example.de>:"),
])
def test_two_line_attributions(name: str, text: str, expected: str) -> None:
    assert plain(text + "\n> Tekst", name) == expected + "\n> Tekst"


@pytest.mark.parametrize(("name", "source", "expected"), [
    ("Jan Kowalski", "<div>W dniu 02.03.2026 o 10:00, Jan&nbsp;Kowalski<br>pisze:</div><p>Jan Kowalski</p>",
     "<div>W dniu 02.03.2026 o 10:00, R. P.<br>pisze:</div><p>Jan Kowalski</p>"),
    ("Ana Souza", "<p>Em seg., 2 de mar. de 2026 às 10:00,</p><p>Ana Souza &lt;ana@example.pt&gt; escreveu:</p>",
     "<p>Em seg., 2 de mar. de 2026 às 10:00,</p><p>R. P. &lt;ana@example.pt&gt; escreveu:</p>"),
    # non-ASCII letters written as entities
    ("Jan Novák", "<div>Dne 02.03.2026 v 10:00 Jan Nov&aacute;k napsal(a):<br></div><p>Jan Nov&#xE1;k</p>",
     "<div>Dne 02.03.2026 v 10:00 R. P. napsal(a):<br></div><p>Jan Nov&#xE1;k</p>"),
    ("Ayşe Yılmaz", "<p><b>Kimden:</b> Ay&#351;e Y&#305;lmaz &lt;ayse@example.com.tr&gt;<br><b>G&ouml;nderildi:</b> x</p>",
     "<p><b>Kimden:</b> R. P. &lt;ayse@example.com.tr&gt;<br><b>G&ouml;nderildi:</b> x</p>"),
])
def test_two_line_and_entity_attributions_in_html(name: str, source: str, expected: str) -> None:
    assert html(source, name) == expected


@pytest.mark.parametrize(("name", "typed"), [
    ("Jan Kowalski", "Nazywam się Jan Kowalski i napisałem tę recenzję.\nJan Kowalski pisze w sprawie zamówienia.\n"
                     "Pozdrawiam\nJan Kowalski"),
    ("Anna Svensson", "Jag heter Anna Svensson och skrev recensionen.\nAnna Svensson skrev den i mars.\n"
                      "Med vänliga hälsningar\nAnna Svensson"),
    ("Anne Jørgensen", "Det er Anne Jørgensen, der skrev anmeldelsen.\nVenlig hilsen\nAnne Jørgensen"),
    ("Ana Souza", "Sou a Ana Souza, escrevi a avaliação.\nAna Souza escreveu a avaliação em março.\n"
                  "Atenciosamente,\nAna Souza"),
    ("Jan Novák", "Jmenuji se Jan Novák a recenzi jsem napsal já.\nJan Novák napsal recenzi v březnu.\n"
                  "S pozdravem\nJan Novák"),
    ("Ayşe Yılmaz", "Ben Ayşe Yılmaz, yorumu ben yazdım.\nAyşe Yılmaz yazdı bunu.\nSaygılarımla,\nAyşe Yılmaz"),
    ("Maximilian Mueller", "Ich bin Maximilian Mueller und schrieb die Bewertung.\nViele Grüße\nMaximilian Mueller"),
])
def test_a_name_the_person_typed_stays(name: str, typed: str) -> None:
    assert plain(typed, name) == typed
    # also right above an attribution of someone else's message
    body = typed + "\nW dniu 02.03.2026 o 10:00, Sklep <sklep@example.pl> pisze:\n> Pytanie"
    assert plain(body, name) == body
    source = "".join(f"<p>{line}</p>" for line in typed.split("\n"))
    assert html(source, name) == source


@pytest.mark.parametrize("word", ["napisałem", "napisałam", "piszę", "skrevet", "escreveram", "napsali", "yazdım",
                                  "yazdığı"])
def test_words_that_only_begin_like_wrote(word: str) -> None:
    assert not attribution.is_attribution(f"Jan Kowalski <jan@example.pl> {word}:")


@pytest.mark.parametrize("separator", [
    "-----Original Message-----", "-----Ursprüngliche Nachricht-----", "-----Wiadomość oryginalna-----",
    "-----Oryginalna wiadomość-----", "-----Ursprungligt meddelande-----", "-----Oprindelig meddelelse-----",
    "-----Opprinnelig melding-----", "-----Mensagem original-----", "-----Původní zpráva-----",
    "-----Özgün İleti-----", "-----Orijinal İleti-----", "> -----ORIGINAL MESSAGE-----",
])
def test_original_message_separators(separator: str) -> None:
    assert attribution.is_attribution(separator)


# (file of quote-bodies/emails, name in its attribution, that line's number, the line after replacing)
CORPUS_ATTRIBUTIONS = [
    ("embedded_email_polish_1.txt", "Michael Downey", 5,
     "Dnia 14 lip 2015 o godz. 00:25 R. P. <info@discourse.org> napisał(a):"),
    ("embedded_email_polish_2.txt", "Neil Lalonde", 4, '23 mar 2017 21:25 "R. P." <meta@discoursemail.com> napisał(a):'),
    ("embedded_email_norwegian.txt", "Jeff Atwood", 4,
     "Den 15. jun. 2016 kl. 20.42 skrev R. P. <info@discourse.org<mailto:info@discourse.org>>:"),
    ("embedded_email_portuguese.txt", "discourse", 3, "Em 2 de fevereiro de 2015 10:58, R. P. <"),
    ("embedded_email_swedish.txt", "Foo Bar", 12, "Från: R. P. [mailto:noreply@foo.bar]"),
    ("embedded_email_german_4.txt", "Max Mustermann", 3, "R. P. <try_discourse@discoursemail.com> schrieb am Fr., 28."),
]


@pytest.mark.skipif(not CORPUS.is_dir(), reason=SKIP_REASON)
@pytest.mark.parametrize(("file", "name", "number", "expected"), CORPUS_ATTRIBUTIONS)
def test_corpus_attributions(file: str, name: str, number: int, expected: str) -> None:
    text = (CORPUS / "quote-bodies" / "emails" / file).read_text(encoding="utf-8").replace("\r\n", "\n")
    before, after = text.split("\n"), plain(text, name).split("\n")
    assert after[number] == expected
    # every other line is as it was: the quoted text and the person's own signature keep their names
    assert after[:number] + after[number + 1:] == before[:number] + before[number + 1:]


@pytest.mark.skipif(not CORPUS.is_dir(), reason=SKIP_REASON)
def test_corpus_signature_stays() -> None:
    text = (CORPUS / "quote-bodies" / "emails" / "embedded_email_polish_1.txt").read_text(encoding="utf-8")
    assert plain(text, "Łukasz Jan Niemier") == text


def test_long_bodies_take_linear_time() -> None:
    # each line once: a body of many short lines or HTML segments must not stall the server
    start = time.monotonic()
    html("x<br>" * 100_000 + "<div>W dniu 2 mar 2026, Jan Kowalski pisze:</div>", "Jan Kowalski")
    plain("x\n" * 200_000 + "Jan\nKowalski pisze:\n" * 1000, "Jan Kowalski")
    assert time.monotonic() - start < 5  # about 0.1 s; quadratic took minutes


def test_a_name_inside_an_address_or_domain_stays() -> None:
    assert plain("Em 2 de fev. de 2015 10:58, discourse <info@discourse.org> escreveu:", "discourse") == \
        "Em 2 de fev. de 2015 10:58, R. P. <info@discourse.org> escreveu:"
    assert plain("Od: kowalski <kowalski@example.pl>", "kowalski") == "Od: R. P. <kowalski@example.pl>"
    assert plain("Kimden: Kowalski (kowalski.example.pl)", "kowalski") == "Kimden: R. P. (kowalski.example.pl)"
