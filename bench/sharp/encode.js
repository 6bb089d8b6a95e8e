// make bench's formats part, sharp's side: encode the same pixels as the engine (its lossless thumbnails) in one format
// at one quality, as sharp encodes them, on one thread; times each encode.
//
//   node bench/sharp/encode.js FORMAT QUALITY EFFORT OUTDIR WIDTHxHEIGHT:RGB_FILE...
//     ->  {"outputs": [{"path", "ms"}], "version"}
//
// EFFORT: sharp's CPU effort for AVIF (0 fastest to 9; libvips hands libheif aom's speed as 9 - effort) and WebP
// (0 to 6); "default" keeps sharp's (AVIF 4, WebP 4). The inputs are raw 8-bit RGB, so only the encode is timed, each
// after one warm-up of the first input.
"use strict";
const fs = require("fs");
const path = require("path");
const sharp = require("sharp");

sharp.concurrency(1);
sharp.cache(false);

function encoder(pipeline, format, quality, effort) {
  const options = { quality, ...(effort === "default" ? {} : { effort: Number(effort) }) };
  if (format === "avif") return pipeline.avif(options);
  if (format === "webp") return pipeline.webp(options);
  return pipeline.jpeg({ quality });
}

function pixels(input) {
  const [size, file] = input.split(/:(.*)/s);
  const [width, height] = size.split("x").map(Number);
  return [fs.readFileSync(file), { raw: { width, height, channels: 3 } }];
}

async function main([format, quality, effort, outdir, ...inputs]) {
  fs.mkdirSync(outdir, { recursive: true });
  const sources = inputs.map(pixels);
  await encoder(sharp(...sources[0]), format, Number(quality), effort).toBuffer(); // warm-up
  const outputs = [];
  for (const [index, source] of sources.entries()) {
    const started = process.hrtime.bigint();
    const data = await encoder(sharp(...source), format, Number(quality), effort).toBuffer();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const out = path.join(outdir, `${index}.${format}`);
    fs.writeFileSync(out, data);
    outputs.push({ path: out, ms });
  }
  process.stdout.write(JSON.stringify({ outputs, version: sharp.versions.sharp }));
}

main(process.argv.slice(2)).catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
