// What `cdk deploy` builds, without building anything: the app is synthesized with bundling on, in a
// child process whose PATH starts with a stand-in for `cargo` that records its arguments and writes
// an empty `bootstrap` where cargo-lambda would. The other tests skip bundling altogether.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { ROOT } from './helpers';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'jit-cdk-bundling-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));
const calls = path.join(work, 'calls.log');
const bin = path.join(work, 'bin');
fs.mkdirSync(bin);
fs.writeFileSync(
  path.join(bin, 'cargo'),
  `#!/usr/bin/env bash
echo "$* @ $PWD" >> '${calls}'
if [[ "$1 $2" == "lambda --version" ]]; then echo "cargo-lambda (stand-in)"; exit 0; fi
if [[ "$1 $2" == "lambda build" ]]; then
  while [[ $# -gt 0 ]]; do [[ "$1" == "--lambda-dir" ]] && dir=$2; shift; done
  mkdir -p "$dir" && printf 'stand-in for %s\\n' "$dir" > "$dir/bootstrap"; exit 0
fi
exit 1
`,
  { mode: 0o755 },
);
const outdir = path.join(work, 'cdk.out');
execFileSync(
  process.execPath,
  ['-e', `require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'app.js'))}).createApp({ outdir: ${JSON.stringify(outdir)} }).app.synth()`],
  { env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH}`, CDK_VALIDATION: 'false' }, stdio: 'pipe' },
);

test('each function is built by cargo-lambda from the workspace: release, arm64, its own binary', () => {
  const builds = fs
    .readFileSync(calls, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('lambda build'))
    .map((line) => line.replace(/--lambda-dir \S+/, '--lambda-dir DIR'))
    .sort();
  assert.deepEqual(
    builds,
    ['grant', 'revoke', 'sync'].map((name) => `lambda build --lambda-dir DIR --release --arm64 --bin ${name} --flatten ${name} @ ${ROOT}`),
  );
});

test("each function's code is the bootstrap cargo-lambda wrote, staged as an asset", () => {
  const read = (file: string) => JSON.parse(fs.readFileSync(path.join(outdir, file), 'utf8'));
  const template = read('JitAccess.template.json') as {
    Resources: { [id: string]: { Type: string; Properties: { Code?: { S3Key?: string } } } };
  };
  const assets = read('JitAccess.assets.json') as { files: { [hash: string]: { source: { path: string; packaging: string } } } };
  const functions = Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
  assert.equal(functions.length, 3);
  for (const fn of functions) {
    const key = fn.Properties.Code?.S3Key ?? '';
    const asset = assets.files[key.replace(/\.zip$/, '')];
    assert.ok(asset, `the function's code ${key} is one of the stack's assets`);
    assert.equal(asset.source.packaging, 'zip');
    assert.match(fs.readFileSync(path.join(outdir, asset.source.path, 'bootstrap'), 'utf8'), /^stand-in for /);
  }
});
