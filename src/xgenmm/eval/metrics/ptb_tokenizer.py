"""A pure-Python equivalent of the caption tokenisation of the COCO caption evaluation
(pycocoevalcap 1.2): Stanford CoreNLP 3.4.1's `PTBTokenizer -preserveLines -lowerCase`,
followed by pycocoevalcap's removal of punctuation tokens. No Java needed.

The Stanford tokenizer is a JFlex lexer: at each position the longest match among its
rules wins, ties going to the earlier rule, and several rules look ahead (trailing
context). `_Lexer` reproduces that for the rules that occur in English captions: words,
contractions ("don't" -> "do n't", "it's" -> "it 's"), the assimilations ("cannot" ->
"can not", "gonna" -> "gon na"), numbers, fractions, hyphenated and slashed compounds,
abbreviations and acronyms (which keep their period), quotes, brackets, dashes,
ellipses, currency, URLs, e-mail addresses, smileys and symbols. The behaviour was worked
out against the 3.4.1 jar that pycocoevalcap ships, including its odd corners:

- QUIRK (pycocoevalcap): the tokenizer lower-cases its output, so brackets come out as
  "-lrb-", "-rrb-", "-lsb-", ... while pycocoevalcap's punctuation list holds the upper-case
  "-LRB-", "-RRB-", "-LCB-", "-RCB-": brackets are never removed and count as words.
- a single letter with a period keeps it ("plan A." -> "a.") unless the next word is one of
  a fixed list of sentence starters ("plan A. The" -> "a the").
- "[?!]+" runs of two or more ("!!", "?!") are tokens that the punctuation list misses.
- `'ll`, `'s`, ... are split off only before a non-letter; the Java run sees the next
  caption's newline after every caption but the last one of its batch, so the very last
  caption of a pycocoevalcap run is tokenised slightly differently ("it'll" -> "it ll").
  We always tokenise as if a newline followed, i.e. like every other caption.
- characters the lexer cannot tokenise (emoji, ...) are deleted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# pycocoevalcap's PUNCTUATIONS (tokenizer/ptbtokenizer.py), removed after tokenisation.
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Unicode digits that are not decimal (superscripts, vulgar fractions, roman numerals) are
# word characters to Python but neither letters nor digits to Java.
_NOT_JAVA_ALNUM = "\u00b2\u00b3\u00b9\u00bc-\u00be\u2070-\u209f\u2150-\u218f\u2460-\u24ff\u2776-\u2793"
_LETTER = f"(?:(?![{_NOT_JAVA_ALNUM}])[^\\W\\d_])"
_ALNUM = f"(?:(?![{_NOT_JAVA_ALNUM}])[^\\W_])"
_SPACE = "[ \\t\\u00A0\\u2000-\\u200A\\u3000]"
_APOS = "(?:['\\u0092\\u2019]|&apos;)"
_APOSETC = "(?:['\\u0092\\u2019`\\u0091\\u2018\\u201B]|&apos;)"
_NOT_LETTER_AHEAD = r"(?![A-Za-z])"

# Abbreviations that keep their period (the lexer's lists, as observed). ABBREV1 ones are
# usually sentence-final-capable and win even against a longer word ("etc.s" -> "etc." "s").
_ABBREVS1 = frozenset(
    """jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri
    ala ariz calif colo conn ct dak fla ga ind kan kans ky md mich minn mo mont neb nev okla
    penn tenn va vt wis wisc wyo inc co cos corp pty ptys pte ltd plc rt bancorp bhd assn univ
    intl sys tel est ext sq jr sr bros blvd rd esq etc al seq bldg ed.d ph.d""".split()
)
_ABBREVS = _ABBREVS1 | frozenset(
    """mr mrs ms drs dr prof profs
    sen sens rep reps atty attys lt col gen messrs gov govs adm rev maj sgt cpl pvt capt st ste
    ave pres lieut hon brig cmdr comdr pfc spc supt supts det m mme mlle vs alex wm jos cie cf
    treas ph invt elec natl mfg mtg dept ft p mt adj ed.d ph.d a.k.a""".split()
)
# Abbreviations whose first letter must be upper case ("Mass." but "mass.").
_ABBREVS_CAPITAL = frozenset("az ark del ill la mass miss ore pa tex wash".split())
# Abbreviations that keep their period only before a number ("no. 5", "fig. 3").
_ABBREVS_BEFORE_NUMBER = frozenset("ca fig figs prop no nos art pp op".split())
# Capitalised words after which a single letter's period is taken as a sentence end.
_SENTENCE_STARTERS = (
    "A|An|The|This|That|These|There|Their|Then|They|He|She|It|We|You|Her|Our|What|When|If|As|At|In|"
    "About|After|But|Here|However|Many|More|Now|Once|One|Other|Since|So|Some|Such|While|Yet|Last|"
    "According|Earlier|Additionally"
)
_SENTENCE_START_AHEAD = re.compile(
    _SPACE + "+(?:" + "|".join(w[0] + "(?i:" + w[1:] + ")" if len(w) > 1 else w for w in _SENTENCE_STARTERS.split("|")) + r"|M(?i:r|s)\.)(?=\s|$)"
)

_ASSIMILATIONS = {"cannot": 3, "gonna": 3, "gotta": 3, "lemme": 3, "gimme": 3, "wanna": 3}
_FRACTIONS = {
    "\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3", "\u2155": "1/5",
    "\u2156": "2/5", "\u2157": "3/5", "\u2158": "4/5", "\u2159": "1/6", "\u215a": "5/6", "\u215b": "1/8",
    "\u215c": "3/8", "\u215d": "5/8", "\u215e": "7/8",
}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}

_MISC_SYMBOL = (
    "[+%&~^|\\\\\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00ba\u00d7\u00f7\u0387\u2016\u2017"
    "\u2020-\u2023\u2030-\u2038\u203b\u203e-\u2042\u2044\u207a-\u207f\u208a-\u208e\u2100-\u214f"
    "\u2190-\u21ff\u2200-\u2bff\u3012\u30fb\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]"
)


def _c(pattern: str, flags: int = re.IGNORECASE) -> re.Pattern:
    return re.compile(pattern, flags)


# A rule: (pattern, action). The pattern may contain a lookahead (the lexer's trailing
# context); the action maps the matched text to output tokens (or None: use as is).
Rule = tuple[re.Pattern, Callable[[str], list[str]] | None]

_WORD = f"{_LETTER}{_ALNUM}*(?:[.!?]{_LETTER}{_ALNUM}*)*"
_NUM = r"(?:\d*(?:[.:,\u00AD\u066B\u066C]\d+)+|\d+)"
_THING_PART = f"(?:[dDoOlL]{_APOSETC}{_ALNUM})?{_ALNUM}+"
_HYPHEN = "[-_\u058a\u2010\u2011]"
_ACRO = r"[A-Za-z](?:\.[A-Za-z])*"


def _norm_apos(tok: str) -> list[str]:
    return [tok.replace("\u2019", "'").replace("\u0092", "'").replace("&apos;", "'")]


def _split_tis(tok: str) -> list[str]:
    """"'tis" -> "'t" "is", "'twas" -> "'t" "was"."""
    cut = len(tok) - (3 if tok.lower().endswith("was") else 2)
    return _norm_apos(tok[:cut]) + [tok[cut:]]


# Quote characters in Latex style; the low and reversed double quotes pass unchanged.
_LATEX_QUOTES = {
    "`": "`", "\u2018": "`", "\u201a": "`", "\u201b": "`", "\u2039": "`", "\u0082": "`", "\u0091": "`",
    "\u2019": "'", "\u203a": "'", "\u0092": "'", "\u201c": "``", "\u00ab": "``", "\u0084": "``",
    "\u0093": "``", "\u201d": "''", "\u00bb": "''", "\u0094": "''",
}


def _quote(tok: str) -> list[str]:
    if tok in ("'", "''", "&apos;"):
        return [tok.replace("&apos;", "'")]
    # Two quote characters form one token, converted character by character: "“’" becomes
    # "``'", which is not in the punctuation list and so survives as a word.
    return ["".join(_LATEX_QUOTES.get(ch, ch) for ch in tok)]


_RULES: list[Rule] = [
    (_c(r"<\/?[A-Za-z!?][^>\r\n]*>"), None),  # SGML
    (_c("&(?:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]"), lambda t: ["--"]),
    (_c("&amp;"), lambda t: ["&"]),
    (_c(r"&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);"), None),
    (_c(r"(?:cannot|gonna|gotta|lemme|gimme|wanna)(?![^\W\d_])"), lambda t: [t[:3], t[3:]]),
    (_c(f"{_APOS}t(?:is|was)(?![^\\W\\d_])"), _split_tis),
    # a word before n't ("do|n't"), then the word before 's 'm 'd 're 've 'll
    (_c(f"(?P<t>[A-Za-z\u00ad]*[A-MO-Za-mo-z]\u00ad*)n{_APOSETC}t"), None),
    (_c(f"(?P<t>{_WORD}){_APOS}(?:[msdMSD]|re|ve|ll)"), None),
    # apostrophe words kept whole
    (_c(
        f"{_APOS}n{_APOS}|{_APOS}n(?![A-Za-z])|[\u2019\u0092]n|[lLdDjJ]{_APOS}|[yY]{_APOS}(?=[A-Za-z])|Dunkin{_APOS}|somethin{_APOS}|ol{_APOS}|{_APOS}em|"
        f"(?-i:[A-HJ-XZn]){_APOSETC}{_LETTER}{{2}}{_LETTER}*|{_APOS}[2-9]0s|{_APOS}till?|"
        f"{_LETTER}+(?-i:[aeiouyAEIOUY]){_APOSETC}(?-i:[aeiouA-Z]){_LETTER}*|{_APOS}cause|cont'd\\.?|"
        f"nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l|O{_APOSETC}o"
    ), None),  # apostrophe words are kept as written (curly apostrophes too)
    (_c(r"(?i:https?):\/\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]"), None),
    (re.compile(
        r"(?:(?:(?i:www)\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(?i:com|net|org|edu)))"
        r"(?:\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"
    ), None),  # LIKELYURL; note ",-_" is a range, as in the lexer
    (_c(r"[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0]*@(?:[^ \t\n\f\r\"<>|().\u00A0]+\.)*(?:[^ \t\n\f\r\"<>|().\u00A0]+)"), None),
    (_c(_WORD), None),
    (_c(f"[@#]{_LETTER}+"), None),
    (_c(f"{_APOS}(?:[msdMSD]|re|ve|ll){_NOT_LETTER_AHEAD}"), _norm_apos),
    # with a curly apostrophe the lexer splits 's 're ... off even before a letter ("x’sa")
    (_c("[\u2019\u0092](?:[msdMSD]|re|ve|ll)"), _norm_apos),
    (_c(f"n{_APOSETC}t{_NOT_LETTER_AHEAD}"), _norm_apos),
    (_c(r"\d{1,2}[\-\/]\d{1,2}[\-\/]\d{2,4}"), None),
    (_c(f"[\\-+]?{_NUM}"), None),
    (_c("(?:\\d{1,4}[- \u00a0])?\\d{1,4}(?:\\\\?\\/|\u2044)\\d{1,4}"), lambda t: [t.replace(" ", "\u00a0")]),
    (_c("[\u00bc\u00bd\u00be\u2153-\u215e]"), lambda t: [_FRACTIONS[t]]),
    (_c(f"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\\.D\\.s|pro-|anti-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls|Cap{_APOS}n|c{_APOS}est"), None),
    (_c(r"(?:E|Yahoo|Jeopardy)\!"), None),
    (_c(r"[^\W_]+(?:-[^\W\d_]+){0,2}(?:\\?\/[^\W_]+(?:-[^\W\d_]+){0,2}){1,2}"), None),  # THING3: and/or
    (_c(r"(?-i:[A-Z]*)\$|#"), None),
    (_c("[\u00a2\u00a3\u00a4\u00a5\u0080\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]"),
     lambda t: [{"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u20ac": "$"}.get(t, t)]),
    # phone numbers: spaces become non-breaking spaces, parentheses are escaped in place
    (_c(
        "(?:\\([0-9]{2,3}\\)[ \u00a0]?|(?:\\+\\+?)?(?:[0-9]{2,4}[\\- \u00a0])?[0-9]{2,4}[\\- \u00a0])[0-9]{3,4}[\\- \u00a0]?[0-9]{3,5}"
        "|(?:(?:\\+\\+?)?[0-9]{2,4}\\.)?[0-9]{2,4}\\.[0-9]{3,4}\\.[0-9]{3,5}"
    ), lambda t: [t.replace(" ", "\u00a0").replace("(", "-LRB-").replace(")", "-RRB-")]),
    (_c('"|&quot;'), lambda t: ["''"]),
    (_c("[<>]?[:;=][\\-o*']?[()DPdpO\\\\{@|\\[\\]](?![A-Za-z0-9])"),
     lambda t: ["".join(_BRACKETS.get(ch, ch) if ch in "()" else ch for ch in t)]),
    (_c(r"&lt;"), lambda t: ["<"]),
    (_c(r"&gt;"), lambda t: [">"]),
    (_c(r"<<|>>"), None),
    (_c(r"[(){}\[\]]"), lambda t: [_BRACKETS[t]]),
    (_c(_HYPHEN), lambda t: [t if t == "_" else "-"]),
    (_c(r"-+"), lambda t: ["-" if len(t) == 1 else "--"]),
    (_c("\\.{3,5}|(?:\\.[ \u00a0]){2,4}\\.|[\u0085\u2026]"), lambda t: ["..."]),
    (_c(r"@+|#+|_+"), None),
    (_c(r"\*+|(?:\\\*){1,3}"), None),
    (_c("[,;:\u3001]"), None),
    (_c(r"[?!]+"), None),
    (_c("[.\u00bf\u00a1\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa\u3002]"), None),
    (_c(r"[=\/<>]"), None),
    (_c(f"{_ALNUM}[A-Za-z0-9.,\u00ad]*(?:-(?:[A-Za-z0-9\u00ad]+|{_ACRO}\\.))+(?![a-zA-Z0-9.+])"), None),  # HTHING
    (_c(f"{_THING_PART}(?:{_HYPHEN}{_THING_PART})*"), None),  # THING
    (_c(r"(?-i:[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+)"), lambda t: [t.replace("&amp;", "&")]),  # THINGA: AT&T
    (_c(f"''|[`\u2018-\u201f\u0082\u0084\u0091-\u0094\u2039\u203a\u00ab\u00bb]{{1,2}}|{_APOS}"), _quote),
    (_c(_MISC_SYMBOL), None),
]

_ABBREV_CANDIDATE = re.compile(f"(?:{_WORD}|{_ACRO}|(?:Ed|Ph)\\.D)\\.", re.IGNORECASE)
_SPECIAL_ACRO = re.compile(r"(?:(?:Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(?:U\.K|Soviet))\.?", re.IGNORECASE)
_NUMBER_AHEAD = re.compile(_SPACE + r"+\d")
_INSENTP_AHEAD = re.compile("[,;:\u3001]")
_SINGLE_ACRO = re.compile(r"[A-Za-z](?:\.[A-Za-z])+|[A-Za-z]", re.IGNORECASE)


def _abbreviation_at(text: str, pos: int) -> int:
    """(length for the longest-match comparison, length of the token) of an abbreviation
    with its period at `pos`, (0, 0) if none: the lexer's ABBREV1/ABBREV2/ABBREV3/ACRONYM
    rules and `word./[,;:]`."""
    m = _ABBREV_CANDIDATE.match(text, pos)
    if not m:
        return 0, 0
    end = m.end()
    body = m.group()[:-1]
    low = body.lower()
    is_abbrev1 = low in _ABBREVS1 or (low in _ABBREVS_CAPITAL and body[0].isupper())
    if is_abbrev1:
        # `{ABBREV1}/[^][^]`: two characters of trailing context count in the comparison;
        # the text is always followed by a newline (see the module notes).
        return end - pos + min(2, len(text) + 1 - end), end - pos
    if end < len(text) and re.match(_LETTER, text[end]):
        return 0, 0  # a longer WORD ("dr.smith") wins
    if _INSENTP_AHEAD.match(text, end):
        return end - pos, end - pos  # {WORD}\./{INSENTP}: "dog., x" keeps the period
    if _SINGLE_ACRO.fullmatch(body):
        if len(body) == 1 and _SENTENCE_START_AHEAD.match(text, end):
            return 0, 0  # "plan A. The": the period ends the sentence
        return end - pos, end - pos
    if low in _ABBREVS:
        return end - pos, end - pos
    if low in _ABBREVS_BEFORE_NUMBER and _NUMBER_AHEAD.match(text, end):
        return end - pos, end - pos
    return 0, 0


def _lex(text: str) -> list[str]:
    tokens: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        ch = text[pos]
        if ch in " \t\n\r\u00a0\u000b\u000c\u2028\u2029\u0085\u3000" or "\u2000" <= ch <= "\u200a":
            pos += 1
            continue
        best_len, best_rule, consumed = 0, None, 0
        for pattern, action in _RULES:
            m = pattern.match(text, pos)
            # JFlex counts a rule's trailing context (group "t" marks the token before it)
            # in the longest-match comparison, but consumes only the token.
            if m and m.end() - pos > best_len:
                tok = m.group("t") if "t" in pattern.groupindex else m.group()
                best_len, best_rule, consumed = m.end() - pos, (tok, action), len(tok)
        special = _SPECIAL_ACRO.match(text, pos)
        if special and special.end() - pos > best_len:
            best_len, best_rule, consumed = special.end() - pos, (special.group(), None), special.end() - pos
        abbrev_len, abbrev_tok = _abbreviation_at(text, pos)
        if abbrev_len and abbrev_len >= best_len:
            best_len, best_rule, consumed = abbrev_len, (text[pos : pos + abbrev_tok], None), abbrev_tok
        if best_rule is None:  # untokenizable: deleted
            pos += 1
            continue
        tok, action = best_rule
        tokens.extend(action(tok) if action else [tok])
        pos += consumed
    return tokens


def ptb_tokenize(caption: str) -> str:
    """Tokenise one caption exactly as pycocoevalcap does before scoring: PTB tokens,
    lower-cased, punctuation tokens removed, joined by single spaces."""
    caption = caption.replace("\n", " ")
    out = []
    for tok in _lex(caption):
        tok = tok.lower()
        if tok not in PUNCTUATIONS:
            out.append(tok)
    return " ".join(out)
