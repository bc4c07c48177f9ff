// The files of TF.js and onnxruntime-web that Node loads, shipped inside the package (dist/vendor).
// Those packages carry every browser bundle, ES module tree and source map they publish: 265 MB
// installed, of which Node runs about 21 MB (each package's Node entry, and the WebAssembly files
// it reads). They are therefore development dependencies, their Node files are copied here at
// build time unchanged (licence headers included), and the compiled code (lib, nodes, tests,
// benchmarks) requires the copies, so tests run exactly what users install and one TF.js engine
// is shared by all of it. What those files require themselves must be a Node builtin, another
// copied package or a dependency of this package, or the build fails: an upgrade that changes the
// Node entry or its imports is caught here, not by a user.
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';

/** Each package's Node entry first, then the other files it loads (relative to the package). */
export const VENDORED = [
  {
    name: 'onnxruntime-web',
    files: ['dist/ort.node.min.js', 'dist/ort-wasm-simd-threaded.mjs', 'dist/ort-wasm-simd-threaded.wasm'],
  },
  { name: '@tensorflow/tfjs-core', files: ['dist/tf-core.node.js'], userCopy: true },
  { name: '@tensorflow/tfjs-backend-cpu', files: ['dist/tf-backend-cpu.node.js'], userCopy: true },
  {
    name: '@tensorflow/tfjs-backend-wasm',
    files: [
      'dist/tf-backend-wasm.node.js',
      'dist/tfjs-backend-wasm.wasm',
      'dist/tfjs-backend-wasm-simd.wasm',
      'dist/tfjs-backend-wasm-threaded-simd.wasm',
    ],
  },
  { name: '@tensorflow/tfjs-layers', files: ['dist/tf-layers.node.js'], userCopy: true },
  { name: '@tensorflow/tfjs-converter', files: ['dist/tf-converter.node.js'], userCopy: true },
];

/**
 * Packages marked `userCopy` get an entry (index.js) that loads the user's copy instead when the
 * user installed @tensorflow/tfjs-node with the same TF.js version (lib/models/runtime/tfjs-source.ts
 * decides): tfjs-node's backend exists only on its own tfjs-core.
 */
const SOURCE_MODULE = 'lib/models/runtime/tfjs-source.js';

/** Modules the copied files name but never load on Node >= 18 (package.json engines), with why. */
const NOT_LOADED = {
  'node-fetch': "tfjs-core's fallback when Node has no global fetch (Node < 18)",
  xor4096: 'named only in a usage comment of the seedrandom code inside TF.js',
};

const REQUIRE = /require\((["'])([^"'./][^"']*)\1\)/g;

/** The file Node loads for `require(name)` according to the package's own package.json. */
function nodeEntry(pkgJson) {
  const dot = pkgJson.exports?.['.'];
  const fromExports = typeof dot === 'string' ? dot : (dot?.node?.require ?? dot?.require ?? dot?.default);
  return path.posix.normalize(fromExports ?? pkgJson.main ?? 'index.js');
}

/**
 * Copies the Node files of each vendored package from the checkout's node_modules into
 * `<dist>/vendor/<name>/` (same relative paths, and a package.json naming the entry), and points
 * the requires between copied packages at each other. Returns the copied size in bytes.
 */
export function copyVendored(root, dist, vendored = VENDORED) {
  const names = new Set(vendored.map((v) => v.name));
  const own = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const runtimeDeps = { ...own.dependencies, ...own.optionalDependencies };
  let bytes = 0;
  const notice = [
    '# Third-party files in dist/vendor',
    '',
    'The files of these packages that Node loads, copied unchanged from the published packages',
    '(except that their requires of each other point at these copies). Each file keeps its',
    "copyright and licence header. The Apache License 2.0 text is this package's LICENSE file.",
    '',
    '| package | version | licence | source |',
    '|---|---|---|---|',
  ];
  const userCopyVersions = new Set();
  for (const { name, files, userCopy } of vendored) {
    const src = path.join(root, 'node_modules', name);
    const pkgJson = JSON.parse(fs.readFileSync(path.join(src, 'package.json'), 'utf8'));
    if (nodeEntry(pkgJson) !== files[0]) {
      throw new Error(
        `vendor: ${name}@${pkgJson.version} loads ${nodeEntry(pkgJson)} on Node, not ${files[0]}`,
      );
    }
    if (own.devDependencies?.[name] === undefined) throw new Error(`vendor: ${name} must be a devDependency`);
    const out = path.join(dist, 'vendor', name);
    fs.mkdirSync(out, { recursive: true });
    const meta = {
      name: pkgJson.name,
      version: pkgJson.version,
      description: `The files of ${pkgJson.name} ${pkgJson.version} that Node loads, as published (copied at build time).`,
      license: pkgJson.license,
      main: files[0],
    };
    if (userCopy) {
      userCopyVersions.add(pkgJson.version);
      const source = path.join(dist, SOURCE_MODULE);
      if (!fs.existsSync(source)) throw new Error(`vendor: ${source} (compiled) is missing`);
      const rel = path.relative(out, source).split(path.sep).join('/');
      meta.main = 'index.js';
      const entry = [
        "// Written by the build (scripts/vendor-runtime.mjs): the user's copy of this package when",
        '// the user installed @tensorflow/tfjs-node with this TF.js version, else the copy shipped here.',
        "'use strict';",
        `const user = require(${JSON.stringify(rel)}).userTfjsModule(${JSON.stringify(name)}, ${JSON.stringify(pkgJson.version)});`,
        `module.exports = user === undefined ? require(${JSON.stringify(`./${files[0]}`)}) : user;`,
        '',
      ].join('\n');
      fs.writeFileSync(path.join(out, 'index.js'), entry);
      bytes += Buffer.byteLength(entry);
    }
    if (pkgJson.repository) meta.repository = pkgJson.repository;
    const repo = pkgJson.repository?.url?.replace(/^git\+/, '').replace(/\.git$/, '') ?? '';
    const where = pkgJson.repository?.directory ? `${repo} (${pkgJson.repository.directory})` : repo;
    notice.push(`| ${name} | ${pkgJson.version} | ${pkgJson.license} | ${where} |`);
    fs.writeFileSync(path.join(out, 'package.json'), `${JSON.stringify(meta, null, 2)}\n`);
    for (const file of files) {
      const target = path.join(out, file);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      if (!/\.m?js$/.test(file)) {
        fs.copyFileSync(path.join(src, file), target);
        bytes += fs.statSync(target).size;
        continue;
      }
      const code = fs.readFileSync(path.join(src, file), 'utf8').replace(REQUIRE, (whole, quote, spec) => {
        const bare = spec.startsWith('node:') ? spec.slice(5) : spec;
        if (builtinModules.includes(bare)) return whole;
        if (names.has(spec)) {
          const rel = path.relative(path.dirname(target), path.join(dist, 'vendor', spec));
          return `require(${quote}${rel.split(path.sep).join('/')}${quote})`;
        }
        if (spec in NOT_LOADED) return whole;
        const wanted = pkgJson.dependencies?.[spec];
        if (runtimeDeps[spec] !== undefined) {
          // A dependency pinned by the copied package (onnxruntime-common) is pinned the same here.
          if (/^\d+\.\d+\.\d+$/.test(wanted ?? '') && runtimeDeps[spec] !== wanted) {
            throw new Error(
              `vendor: ${name}@${pkgJson.version} needs ${spec} ${wanted}; package.json has ${runtimeDeps[spec]}`,
            );
          }
          return whole;
        }
        throw new Error(
          `vendor: ${name}/${file} requires ${spec}, which is not a dependency of this package`,
        );
      });
      fs.writeFileSync(target, code);
      bytes += Buffer.byteLength(code);
    }
  }
  if (userCopyVersions.size > 1) {
    throw new Error(`vendor: the TF.js packages differ in version (${[...userCopyVersions].join(', ')})`);
  }
  notice.push('', '## MIT License', '', MIT, '');
  fs.writeFileSync(path.join(dist, 'vendor', 'LICENSES.md'), notice.join('\n'));
  return bytes;
}

/** The MIT licence of onnxruntime-web (and of the parts of tfjs-layers whose headers name it). */
const MIT = `Copyright (c) Microsoft Corporation (onnxruntime-web); Copyright Google LLC (the
@tensorflow/tfjs-layers files whose header names the MIT licence).

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.`;

/** Points `require('<vendored package>')` in the compiled .js files under `dir` at the copies. */
export function linkVendored(dist, names = new Set(VENDORED.map((v) => v.name)), dir = dist) {
  let count = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (file !== path.join(dist, 'vendor')) count += linkVendored(dist, names, file);
      continue;
    }
    if (!entry.name.endsWith('.js')) continue;
    const code = fs.readFileSync(file, 'utf8');
    const linked = code.replace(REQUIRE, (whole, quote, spec) => {
      if (!names.has(spec)) return whole;
      count += 1;
      let rel = path
        .relative(path.dirname(file), path.join(dist, 'vendor', spec))
        .split(path.sep)
        .join('/');
      if (!rel.startsWith('.')) rel = `./${rel}`;
      return `require(${quote}${rel}${quote})`;
    });
    if (linked !== code) fs.writeFileSync(file, linked);
  }
  return count;
}
