"""Open-ended answer metrics: the VQA challenge accuracy and ANLS.

`vqa_accuracy` reproduces `vqaEval.py` of the official VQA evaluation (GT-Vision-Lab/VQA),
the script every published VQAv2 / OKVQA / VizWiz / TextVQA number went through, including
its quirks (named where they live). `anls` reproduces the DocVQA / ST-VQA (RRC) script.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# vqaEval.py's contractions map, verbatim (its values mix straight and curly apostrophes;
# since "'" is stripped by processPunctuation first, only the apostrophe-less keys matter
# for a prediction, and a mapped value keeps its curly apostrophe).
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn’t’ve", "couldnt’ve": "couldn’t’ve", "didnt": "didn’t", "doesnt": "doesn’t",
    "dont": "don’t", "hadnt": "hadn’t", "hadnt’ve": "hadn’t’ve", "hadn'tve": "hadn’t’ve", "hasnt": "hasn’t",
    "havent": "haven’t", "hed": "he’d", "hed’ve": "he’d’ve", "he’dve": "he’d’ve", "hes": "he’s",
    "howd": "how’d", "howll": "how’ll", "hows": "how’s", "Id’ve": "I’d’ve", "I’dve": "I’d’ve", "Im": "I’m",
    "Ive": "I’ve", "isnt": "isn’t", "itd": "it’d", "itd’ve": "it’d’ve", "it’dve": "it’d’ve", "itll": "it’ll",
    "let’s": "let’s", "maam": "ma’am", "mightnt": "mightn’t", "mightnt’ve": "mightn’t’ve",
    "mightn’tve": "mightn’t’ve", "mightve": "might’ve", "mustnt": "mustn’t", "mustve": "must’ve",
    "neednt": "needn’t", "notve": "not’ve", "oclock": "o’clock", "oughtnt": "oughtn’t",
    "ow’s’at": "’ow’s’at", "’ows’at": "’ow’s’at", "’ow’sat": "’ow’s’at", "shant": "shan’t",
    "shed’ve": "she’d’ve", "she’dve": "she’d’ve", "she’s": "she’s", "shouldve": "should’ve",
    "shouldnt": "shouldn’t", "shouldnt’ve": "shouldn’t’ve", "shouldn’tve": "shouldn’t’ve",
    "somebody’d": "somebodyd", "somebodyd’ve": "somebody’d’ve", "somebody’dve": "somebody’d’ve",
    "somebodyll": "somebody’ll", "somebodys": "somebody’s", "someoned": "someone’d",
    "someoned’ve": "someone’d’ve", "someone’dve": "someone’d’ve", "someonell": "someone’ll",
    "someones": "someone’s", "somethingd": "something’d", "somethingd’ve": "something’d’ve",
    "something’dve": "something’d’ve", "somethingll": "something’ll", "thats": "that’s",
    "thered": "there’d", "thered’ve": "there’d’ve", "there’dve": "there’d’ve", "therere": "there’re",
    "theres": "there’s", "theyd": "they’d", "theyd’ve": "they’d’ve", "they’dve": "they’d’ve",
    "theyll": "they’ll", "theyre": "they’re", "theyve": "they’ve", "twas": "’twas", "wasnt": "wasn’t",
    "wed’ve": "we’d’ve", "we’dve": "we’d’ve", "weve": "we've", "werent": "weren’t", "whatll": "what’ll",
    "whatre": "what’re", "whats": "what’s", "whatve": "what’ve", "whens": "when’s", "whered": "where’d",
    "wheres": "where's", "whereve": "where’ve", "whod": "who’d", "whod’ve": "who’d’ve",
    "who’dve": "who’d’ve", "wholl": "who’ll", "whos": "who’s", "whove": "who've", "whyll": "why’ll",
    "whyre": "why’re", "whys": "why’s", "wont": "won’t", "wouldve": "would’ve", "wouldnt": "wouldn’t",
    "wouldnt’ve": "wouldn’t’ve", "wouldn’tve": "wouldn’t’ve", "yall": "y’all", "yall’ll": "y’all’ll",
    "y’allll": "y’all’ll", "yall’d’ve": "y’all’d’ve", "y’alld’ve": "y’all’d’ve", "y’all’dve": "y’all’d’ve",
    "youd": "you’d", "youd’ve": "you’d’ve", "you’dve": "you’d’ve", "youll": "you’ll", "youre": "you’re",
    "youve": "you’ve",
}
_MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = ("a", "an", "the")
# QUIRK (vqaEval.py): "(?!<=\d)" was meant as a look-behind "(?<!\d)"; as written it is a
# look-ahead for the literal "<=" + digit, which never blocks, so every period that is not
# followed by a digit is removed, also after a digit ("5. " -> "5 ").
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
_PUNCT = [";", ":", r"/", r"'", "[", "]", '"', "(", ")", "=", "+", "\\", "_", ">", "<", "@", "`", ",", "?"]
# (vqaEval.py's list: "-", "!", "{", "}" are not in it, "." is handled by _PERIOD_STRIP)


def process_punctuation(text: str) -> str:
    """vqaEval.py `processPunctuation`."""
    out = text
    # QUIRK: the test looks at the original text, and a single "digit,digit" anywhere makes
    # every punctuation mark vanish (instead of becoming a space) in the whole answer.
    has_comma_number = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        if (p + " " in text or " " + p in text) or has_comma_number:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # QUIRK: re.UNICODE is passed where `sub` takes its count, so at most 32 periods go.
    return _PERIOD_STRIP.sub("", out, count=int(re.UNICODE))


def process_digit_article(text: str) -> str:
    """vqaEval.py `processDigitArticle`: lower-case, number words to digits, no articles,
    contractions restored."""
    words = []
    for word in text.lower().split():
        word = _MANUAL_MAP.get(word, word)
        if word not in _ARTICLES:
            words.append(word)
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa_answer(text: str) -> str:
    """The normalisation vqaEval.py applies to a predicted answer."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction against the human answers (10 in VQAv2): the mean,
    over the leave-one-out subsets of the answers, of min(#matches in the subset / 3, 1).

    As vqaEval.py: the prediction is normalised (punctuation, then digits, articles and
    contractions). QUIRK: the human answers only get `process_punctuation`, and only when
    they are not all identical; when all agree they are compared as given. The official
    annotation files are already normalised, so this matters only for other data.
    Leave-one-out drops one answer *record* (the official code compares answer dicts,
    which differ by answer_id), never all copies of an equal string.
    """
    if not answers:
        raise ValueError("vqa_accuracy: empty list of reference answers")
    pred = normalize_vqa_answer(prediction)
    gts = list(answers)
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    matches = [a == pred for a in gts]
    total = sum(matches)
    accs = [min(1.0, (total - m) / 3.0) for m in matches]
    return float(sum(accs)) / len(accs)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), two-row dynamic programming."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity of one prediction (DocVQA / ST-VQA script):
    1 - min over answers of dist / max(len), set to 0 when below `threshold` (a similarity
    of exactly 0.5 is kept).

    Both strings are stripped, lower-cased and whitespace-collapsed before the distance.
    QUIRK (official script): the length in the denominator is taken from the raw strings
    (`len(s.upper())`), not from the normalised ones.
    """
    if not answers:
        raise ValueError("anls: empty list of reference answers")
    det = " ".join(prediction.strip().lower().split())
    values = []
    for answer in answers:
        gt = " ".join(answer.strip().lower().split())
        dist = levenshtein(gt, det)
        length = max(len(answer.upper()), len(prediction.upper()))
        values.append(0.0 if length == 0 else dist / length)
    score = 1.0 - min(values)
    return 0.0 if score < threshold else score
