#!/usr/bin/env node
// Writes golden GPT-2 token ids for model/testdata/tokenizer/golden.json,
// produced by npm gpt-3-encoder@1.1.4, a JavaScript port of GPT-2's encoder
// that is independent of the Go tokenizer under test.
//
// Usage: node scripts/gen_token_goldens.js PKGDIR > golden.json
// where PKGDIR is the unpacked package (holding Encoder.js, encoder.json and
// vocab.bpe). scripts/gen_token_goldens.sh fetches it and runs this.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const pkgDir = process.argv[2];
if (!pkgDir) {
  console.error('usage: gen_token_goldens.js PKGDIR');
  process.exit(2);
}
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
if (pkg.name !== 'gpt-3-encoder' || pkg.version !== '1.1.4') {
  console.error(`want gpt-3-encoder@1.1.4, got ${pkg.name}@${pkg.version}`);
  process.exit(1);
}
const encoder = require(path.resolve(pkgDir, 'Encoder.js'));

// The package does not export its pre-tokenizer pattern; take it from its
// source so the golden pieces come from the package itself.
const src = fs.readFileSync(path.join(pkgDir, 'Encoder.js'), 'utf8');
const m = src.match(/const pat = \/(.*)\/gu\n/);
if (!m) {
  console.error('cannot find the pre-tokenizer pattern in Encoder.js');
  process.exit(1);
}
const pat = new RegExp(m[1], 'gu');

const sha256 = (f) => crypto.createHash('sha256').update(fs.readFileSync(path.join(pkgDir, f))).digest('hex');

const longParagraph = [
  'The history of computing is a story of abstractions stacked on abstractions.',
  'Early machines were programmed by rewiring panels; later, stored programs let the same hardware',
  'run anything that could be written down as a sequence of instructions. Compilers turned',
  "mathematical notation into machine code, operating systems hid the hardware's quirks, and",
  'networks connected machines across continents. Each layer made the next one possible, and each',
  'brought its own failures: buffer overflows, race conditions, off-by-one errors, and the',
  "occasional 2038 problem. Today's language models sit at the top of this tower, predicting the",
  'next token of text with billions of parameters, yet underneath they still multiply matrices,',
  'move bytes between memories, and wait on the slowest link in the chain. Understanding the whole',
  'stack, from transistors to tokenizers, remains the surest way to make any of it fast.',
].join(' ');

const goCode = [
  'package main',
  '',
  'import (',
  '\t"fmt"',
  '\t"os"',
  ')',
  '',
  '// Sum returns the sum of xs.',
  'func Sum(xs []float64) (s float64) {',
  '\tfor _, x := range xs {',
  '\t\ts += x',
  '\t}',
  '\treturn s',
  '}',
  '',
  'func main() {',
  '\tif len(os.Args) < 2 {',
  '\t\tfmt.Fprintln(os.Stderr, "usage: sum N...")',
  '\t\tos.Exit(2)',
  '\t}',
  '\tfmt.Printf("%.3f\\n", Sum([]float64{1, 2.5, -3e4}))',
  '}',
  '',
].join('\n');

const cases = [
  ['empty', ''],
  ['single_letter', 'a'],
  ['single_space', ' '],
  ['hello_world', 'Hello world'],
  ['prose', 'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.'],
  ['prose_lines', 'The quick brown fox jumps over the lazy dog.\nPack my box with five dozen liquor jugs!\n'],
  ['long_paragraph', longParagraph],
  ['go_code', goCode],
  ['python_code', 'def f(x):\n    if x > 0:\n        return x ** 2\n    return -x\n'],
  ['numbers', '1234567 3.14159 -42 +7 0.000001 1e-9 1,000,000 007'],
  ['dates', 'On 2024-01-15 at 09:30:00, and again on 12/31/1999 and 1 Jan. 2000.'],
  ['many_spaces', 'a          b'],
  ['tabs', 'a\tb\t\tc\t\t\td'],
  ['newlines', 'line one\nline two\n\n\nline five'],
  ['triple_newline', '\n\n\n'],
  ['trailing_spaces', 'trailing spaces   '],
  ['leading_spaces', '   leading spaces'],
  ['mixed_whitespace', ' \t \n \r\n  x \t\ty\n\n  \n z  '],
  ['only_whitespace', '  \t\n  \n\t '],
  ['crlf', 'Windows\r\nline\r\nendings\r\n'],
  ['contractions', "it's don't we're they've I'm you'll he'd"],
  ['contractions_upper', "IT'S DON'T WE'RE THEY'VE I'M YOU'LL HE'D"],
  ['contractions_edge', "'s 't 're 've 'm 'll 'd ''s '  's x's'S 'sup 'llama"],
  ['quotes', `"Quoted," she said, 'single' and \`backticks\` and "curly".`],
  ['accents', 'café naïve Zürich résumé façade coöperate São Paulo'],
  ['accents_decomposed', 'cafe\u0301 nai\u0308ve'],
  ['german_french', 'Größenwahn straße Œuvre garçon déjà vu'],
  ['cjk_japanese', '日本語のテキストです。東京は大きい。'],
  ['cjk_chinese', '中文分词测试，你好世界！'],
  ['korean', '안녕하세요 세계'],
  ['cyrillic_greek', 'Привет мир, Γειά σου Κόσμε'],
  ['arabic_hebrew', 'مرحبا بالعالم שלום עולם'],
  ['emoji', 'Great job 👍 and 🎉🎉!'],
  ['emoji_zwj_family', 'family: 👨‍👩‍👧‍👦 done'],
  ['emoji_flags_skin', '🇯🇵 🇩🇪 👋🏽 ❤️'],
  ['mixed_scripts', 'English, 日本語, Ελληνικά, and русский in one line: 42 items ✓'],
  ['punctuation_runs', 'Wait... what?!?! --- *** ### !!! ??? ... ,,, ;;; :: (()) [[]] {{}}'],
  ['symbols', '$100 @user #tag 50% a&b x|y ~/path <tag/> a_b a-b €5 £3 ¥9 © ® ™'],
  ['url_email', 'See https://example.com/a/b?c=1&d=two#frag or mail me@example.org.'],
  ['superscripts_fractions', 'x² + y³ = z⁴, ½ cup, ¾ mile, Ⅻ o\'clock, ①②③'],
  ['endoftext_literal', 'a<|endoftext|>b'],
  ['nbsp_and_unicode_spaces', 'a\u00a0b\u2003c\u3000d'],
  ['long_word', 'Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism'],
  ['repeated_chars', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa zzzzzzzzzzzzzzzzzzzz'],
  ['digits_long', '31415926535897932384626433832795028841971693993751'],
  ['hex_and_ids', '0xDEADBEEF uuid 123e4567-e89b-12d3-a456-426614174000 v1.2.3'],
  ['markdown', '# Title\n\n- item *one*\n- item **two**\n\n```go\nx := 1\n```\n'],
  ['json', '{"name": "chameleon", "layers": 12, "ok": true, "list": [1, 2, 3]}'],
];

const out = [];
const codePoints = new Set();
for (const [name, text] of cases) {
  const ids = encoder.encode(text);
  if (encoder.decode(ids) !== text) {
    console.error(`case ${name}: gpt-3-encoder does not round-trip`);
    process.exit(1);
  }
  const pieces = Array.from(text.matchAll(pat), (x) => x[0]);
  for (const ch of text) codePoints.add(ch.codePointAt(0));
  out.push({ name, text, pieces, ids });
}

// How gpt-3-encoder's pattern classifies each code point of the texts.
const classes = Array.from(codePoints).sort((a, b) => a - b).map((cp) => {
  const ch = String.fromCodePoint(cp);
  let cls = 'other';
  if (/\p{L}/u.test(ch)) cls = 'letter';
  else if (/\p{N}/u.test(ch)) cls = 'number';
  else if (/\s/u.test(ch)) cls = 'space';
  return { cp, cls };
});

// Hand-formatted JSON: one line per field so diffs stay readable.
const q = JSON.stringify;
const lines = [];
lines.push('{');
lines.push(`  "generator": ${q('scripts/gen_token_goldens.js')},`);
lines.push(`  "package": ${q(pkg.name + '@' + pkg.version)},`);
lines.push(`  "node": ${q(process.version)},`);
lines.push(`  "unicode": ${q(process.versions.unicode || '')},`);
lines.push(`  "encoder_json_sha256": ${q(sha256('encoder.json'))},`);
lines.push(`  "vocab_bpe_sha256": ${q(sha256('vocab.bpe'))},`);
lines.push('  "classes": [');
lines.push(classes.map((c) => `    ${q(c)}`).join(',\n'));
lines.push('  ],');
lines.push('  "cases": [');
lines.push(out.map((c) => [
  '    {',
  `      "name": ${q(c.name)},`,
  `      "text": ${q(c.text)},`,
  `      "pieces": ${q(c.pieces)},`,
  `      "ids": ${q(c.ids)}`,
  '    }',
].join('\n')).join(',\n'));
lines.push('  ]');
lines.push('}');
process.stdout.write(lines.join('\n') + '\n');
