// The vectors tests/test_placeholder.py checks handlers/placeholder.py against, made by the reference ThumbHash
// (npm thumbhash 0.1.1, evanw's own). Run: npm install thumbhash@0.1.1 && node tests/thumbhash_vectors.mjs [random]
// The pixels come from a formula that tests/test_placeholder.py repeats (pixels()), so no image file is needed.
import { createHash } from "node:crypto";
import { rgbaToThumbHash, thumbHashToRGBA } from "thumbhash";

function pixels(w, h, alpha) {
  const rgba = new Uint8Array(w * h * 4);
  for (let y = 0, i = 0; y < h; y++)
    for (let x = 0; x < w; x++, i += 4) {
      rgba[i] = (x * 255 / w + 40 * ((x * y) % 3)) & 255;
      rgba[i + 1] = (y * 255 / h) & 255;
      rgba[i + 2] = ((x + y) * 7) & 255;
      rgba[i + 3] = alpha ? ((x < w / 3 ? 0 : 255 - ((x * y) & 127)) & 255) : 255;
    }
  return rgba;
}

const vectors = [];
for (const [w, h, alpha] of [[100, 75, false], [75, 100, false], [100, 100, false], [37, 9, false], [1, 1, false],
                             [100, 68, true], [40, 90, true]]) {
  const hash = rgbaToThumbHash(w, h, pixels(w, h, alpha));
  const image = thumbHashToRGBA(hash);
  vectors.push([w, h, alpha, Buffer.from(hash).toString("hex"), image.w, image.h,
                createHash("sha256").update(image.rgba).digest("hex")]);
}

// Random inputs (`node tests/thumbhash_vectors.mjs random`): sizes 1-24 a side, random pixels, half with alpha, from
// MINSTD (seed 30), which tests/test_placeholder.py repeats (random_inputs()); every product stays below 2^53.
function randomInputs(count) {
  let seed = 30;
  const next = (below) => { seed = (seed * 48271) % 2147483647; return seed % below; };
  const inputs = [];
  for (let n = 0; n < count; n++) {
    const w = 1 + next(24), h = 1 + next(24), alpha = next(2) === 1;
    const rgba = new Uint8Array(w * h * 4);
    for (let i = 0; i < rgba.length; i++) rgba[i] = (i % 4 === 3 && !alpha) ? 255 : next(256);
    inputs.push([w, h, alpha, rgba]);
  }
  return inputs;
}

if (process.argv[2] === "random") {
  console.log(JSON.stringify(randomInputs(60).map(([w, h, alpha, rgba]) =>
    [w, h, alpha, Buffer.from(rgbaToThumbHash(w, h, rgba)).toString("hex")])));
} else {
  console.log(JSON.stringify(vectors, null, 1));
}
