// make bench's sharp contender: time sharp on one input in a fresh process, as bench/worker.py times the others.
//
//   node bench/sharp/worker.js MODE PATH REPEATS SIZES FORMAT QUALITY OUTDIR
//     ->  {"median_ms", "peak_rss_mb", "outputs", "version"}
//
// MODE "sizes": sharp as the Node thumbnail generators use it, one pipeline per size from the source bytes
// (shrink-on-load, then Lanczos 3): its best quality at every size. MODE "once": sharp at its fastest for several
// sizes, as the engine and pyvips work: the largest from the source, kept as pixels, each smaller one from it.
// Both auto-rotate from EXIF and strip metadata (sharp's default), on one thread: libvips' concurrency 1 and
// libuv's pool of 1 (UV_THREADPOOL_SIZE, set by the caller), the function's share of a CPU. JPEG with sharp's
// defaults otherwise (optimised Huffman coding, 4:2:0 chroma), at the engine's quality. The last repeat's
// outputs are written to OUTDIR as SIZE.EXT for the PSNR after encoding.
"use strict";
const fs = require("fs");
const path = require("path");
const sharp = require("sharp");

sharp.concurrency(1);
sharp.cache(false);

function encode(pipeline, format, quality) {
  if (format === "jpeg") return pipeline.jpeg({ quality }).toBuffer();
  if (format === "webp") return pipeline.webp({ quality }).toBuffer();
  return pipeline.png().toBuffer();
}

function fit(pipeline, size) {
  return pipeline.resize(size, size, { fit: "inside", withoutEnlargement: true });
}

async function eachFromSource(data, sizes, format, quality) {
  const source = sharp(data, { failOn: "error" }).rotate();
  return Promise.all(sizes.map((size) => encode(fit(source.clone(), size), format, quality)));
}

async function largestThenCascade(data, sizes, format, quality) {
  const { data: pixels, info } = await fit(sharp(data, { failOn: "error" }).rotate(), sizes[0])
    .raw().toBuffer({ resolveWithObject: true });
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  return Promise.all(sizes.map((size, i) => encode(i ? fit(sharp(pixels, raw), size) : sharp(pixels, raw), format, quality)));
}

const MODES = { sizes: eachFromSource, once: largestThenCascade };

async function main([mode, file, repeats, sizes, format, quality, outdir]) {
  const thumbnails = MODES[mode];
  if (!thumbnails) throw new Error(`unknown mode ${mode}: one of ${Object.keys(MODES)}`);
  const data = fs.readFileSync(file);
  const boxes = sizes.split(",").map(Number).sort((a, b) => b - a);
  await thumbnails(data, boxes, format, Number(quality)); // warm-up, as the Python worker does
  const times = [];
  let outputs = [];
  for (let i = 0; i < Number(repeats); i++) {
    const started = process.hrtime.bigint();
    outputs = await thumbnails(data, boxes, format, Number(quality));
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  times.sort((a, b) => a - b);
  const middle = times.length >> 1;
  const median = times.length % 2 ? times[middle] : (times[middle - 1] + times[middle]) / 2;
  const extension = { jpeg: "jpg", webp: "webp", png: "png" }[format];
  fs.mkdirSync(outdir, { recursive: true });
  const written = boxes.map((size, i) => {
    const out = path.join(outdir, `${size}.${extension}`);
    fs.writeFileSync(out, outputs[i]);
    return out;
  });
  // maxRSS is in KiB: the whole Node process (about 40 MB of it is Node itself).
  const rss = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify({ median_ms: median, peak_rss_mb: rss, outputs: written, version: sharp.versions.sharp }));
}

main(process.argv.slice(2)).catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
