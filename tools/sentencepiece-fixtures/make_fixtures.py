"""Trains a small SentencePiece model with Llama-2's trainer settings and writes what sentencepiece itself encodes.

Writes <output>/tokenizer.model and <output>/expected.json: for each awkward text, sentencepiece's ids, pieces and
decode(ids). Deterministic: a corpus built from fixed lines, one thread, no input shuffling; running it twice writes
byte-identical files (checked with --check).

    python3 tools/sentencepiece-fixtures/make_fixtures.py --output tests/RetNet.Ilgpu.Tests/Fixtures/SentencePiece
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile

import sentencepiece as spm

VOCAB_SIZE = 500

# English prose, code and a little accented Latin and Greek: enough for merges of words, indentation and operators.
# Emoji and CJK are deliberately absent, so the fixture texts that use them must fall back to bytes.
PROSE = [
    "The model reads the text one token at a time and keeps a state instead of a cache.",
    "Retention decays the past with a fixed rate per head, so the state stays the same size.",
    "A tokenizer turns text into ids; the ids index the rows of the embedding table.",
    "We trained the network for 1200 steps on 4096 tokens per batch and measured 3.25 nats.",
    "Café, naïve, résumé and über are words with accents that the vocabulary should cover.",
    "The Greek letters α, β and γ name the decay, the rate and the gain in the paper.",
    "In the morning the station was quiet, and the train left at 7:45 for the coast.",
    "Numbers such as 2023, 65536 and 3.14159 are split into single digits by the trainer.",
    "She said: \"Decoding streams whole characters, never half of one.\"",
    "Tabs\tand  double  spaces   stay exactly as written; nothing is collapsed.",
]

CODE = [
    "def forward(self, x):",
    "    return self.proj(x) + x",
    "for (int i = 0; i < n; i++) {",
    "    sum += a[i] * b[i];",
    "}",
    "public static int Add(int a, int b) => a + b;",
    "if x is None:",
    "        raise ValueError(\"x must not be None\")",
    "var tokens = tokenizer.Encode(text);",
    "    // the state is [B, H, Dk, Dv]",
    "\tprint(f\"loss {loss:.4f}\")",
    "import torch.nn as nn",
]


def corpus_lines():
    """A fixed corpus: every line of prose and code, repeated with variations, in a fixed order."""
    lines = []
    for round_ in range(40):
        for i, line in enumerate(PROSE):
            lines.append(line)
            lines.append(f"{round_} {i} {line.lower()}")
        for line in CODE:
            lines.append(line)
            lines.append(line.replace("x", f"x{round_ % 7}"))
    return lines


# Llama-2's tokenizer.model records these in its trainer_spec and normalizer_spec; the ones that differ here are
# marked (a small corpus, one thread, no shuffling for reproducibility). See README.md.
TRAINER_SETTINGS = dict(
    model_type="bpe",
    vocab_size=VOCAB_SIZE,                 # Llama-2: 32000
    self_test_sample_size=0,
    input_format="text",
    character_coverage=0.99995,
    input_sentence_size=0,                 # Llama-2: 200000000 (a sample of its corpus); 0 reads every line
    seed_sentencepiece_size=1000000,
    shrinking_factor=0.75,
    num_threads=1,                         # Llama-2: 80
    num_sub_iterations=2,
    max_sentence_length=4192,
    shuffle_input_sentence=False,          # Llama-2: true
    max_sentencepiece_length=16,
    split_by_unicode_script=True,
    split_by_whitespace=True,
    split_by_number=True,
    treat_whitespace_as_suffix=False,
    split_digits=True,
    allow_whitespace_only_pieces=True,
    vocabulary_output_piece_score=True,
    hard_vocab_limit=True,
    use_all_vocab=False,
    byte_fallback=True,
    unk_id=0,
    bos_id=1,
    eos_id=2,
    pad_id=-1,
    normalization_rule_name="identity",
    add_dummy_prefix=True,
    remove_extra_whitespaces=False,
)

TEXTS = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    " \t \n ",
    "Hello",
    "Hello world",
    " Hello world",
    "Hello world ",
    "  Hello   world  ",
    "Hello\tworld",
    "Hello\nworld\n",
    "line one\r\nline two\r\n",
    "The model reads the text one token at a time.",
    "1234567890",
    "In 2023, 65536 tokens cost $3.14.",
    "Café naïve über résumé",
    "α β γ",
    "😀",
    "I ❤️ RetNet 🚀!",
    "日本語のテキスト",
    "中文 and English mixed",
    "def forward(self, x):\n    return self.proj(x) + x\n",
    "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }",
    "\tprint(f\"loss {loss:.4f}\")",
    "    indented with four spaces",
    "<s> and </s> written as text",
    "Supercalifragilisticexpialidocious" * 3,
    "antidisestablishmentarianism",
    "a" * 40,
    "é",
    "ü😀日",
    "Ω≈ç√∫",
    "end.",
]


def train(folder):
    with open(os.path.join(folder, "corpus.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(corpus_lines()) + "\n")
    # The model records its input and prefix in trainer_spec: relative names keep the file free of the temporary path.
    here = os.getcwd()
    os.chdir(folder)
    try:
        spm.SentencePieceTrainer.train(input="corpus.txt", model_prefix="tokenizer", minloglevel=2, **TRAINER_SETTINGS)
    finally:
        os.chdir(here)
    return os.path.join(folder, "tokenizer.model")


def expected(model_path):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    cases = []
    for text in TEXTS:
        ids = sp.encode(text)
        cases.append({
            "text": text,
            "ids": ids,
            "pieces": [sp.id_to_piece(i) for i in ids],
            "decoded": sp.decode(ids),
        })
    # decode() of ids that encode() never writes: bos/eos around a text, the unknown id, a lone byte piece, and
    # which spaces at the start are the dummy prefix's (a lone ▁ first, then a piece that starts with ▁).
    hello = sp.encode("Hello world")
    space, the, byte_space = sp.piece_to_id("\u2581"), sp.piece_to_id("\u2581the"), sp.piece_to_id("<0x20>")
    decode_only = [[sp.bos_id()] + hello + [sp.eos_id()], [sp.unk_id()], hello + [sp.unk_id()] + hello,
                   [sp.piece_to_id("<0xE6>")], [sp.bos_id()], hello + [sp.bos_id()] + hello, [space, the],
                   [sp.bos_id(), space, space, the], [byte_space, the], [sp.unk_id(), the], [sp.eos_id(), the]]
    return {
        "sentencepiece_version": spm.__version__,
        "vocab_size": sp.get_piece_size(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        "pad_id": sp.pad_id(),
        "cases": cases,
        "decode_only": [{"ids": ids, "decoded": sp.decode(ids)} for ids in decode_only],
    }


def write(output):
    os.makedirs(output, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        model_path = train(folder)
        with open(model_path, "rb") as f:
            model = f.read()
        data = expected(model_path)
    with open(os.path.join(output, "tokenizer.model"), "wb") as f:
        f.write(model)
    with open(os.path.join(output, "expected.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")


def digest(folder):
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in ("tokenizer.model", "expected.json")}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="the folder to write tokenizer.model and expected.json to")
    parser.add_argument("--check", action="store_true",
                        help="write twice into temporary folders and fail unless the files are byte-identical")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            write(a)
            write(b)
            first, second = digest(a), digest(b)
            for name in first:
                print(f"{name}: {first[name]} {'same' if first[name] == second[name] else 'DIFFERENT ' + second[name]}")
            if first != second:
                sys.exit(1)
    write(args.output)
    print(f"wrote {args.output}: sentencepiece {spm.__version__}, {VOCAB_SIZE} pieces, {len(TEXTS)} texts")


if __name__ == "__main__":
    main()
