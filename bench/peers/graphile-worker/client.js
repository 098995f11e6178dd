"use strict";
// The client of `ordo bench queue --system graphile-worker`: PEER_CLIENTS callers, each
// adding one `noop` job after another with graphile-worker's own `addJob` (WorkerUtils), as
// Ordo's bench client submits one job after another over HTTP.
//
// Protocol with the bench, one line each way:
//   1. adds PEER_WARMUP_JOBS jobs (ids `warmup-<i>`) and prints `warm`;
//   2. waits for `go` on stdin, adds PEER_JOBS jobs (ids `run-<i>`), prints `done <ms>` (the
//      phase's duration, first call to last answer);
//   3. when stdin closes, writes one NDJSON line per measured job to PEER_OUT,
//      {"id", "send", "ack"} (epoch ms), and exits. The bench keeps it alive until then so
//      its CPU time is read while it still runs.
// An addJob that takes longer than PEER_SUBMIT_TIMEOUT_MS, or fails, ends the process with
// exit code 1.

const fs = require("node:fs");
const readline = require("node:readline");
const { makeWorkerUtils } = require("graphile-worker");
const { now, setting, integerSetting, fail, logger, say } = require("./lib");

const databaseUrl = setting("PEER_DATABASE_URL");
const clients = integerSetting("PEER_CLIENTS");
const jobs = integerSetting("PEER_JOBS");
const warmupJobs = integerSetting("PEER_WARMUP_JOBS");
const submitTimeoutMs = integerSetting("PEER_SUBMIT_TIMEOUT_MS");
const outPath = setting("PEER_OUT");

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`addJob did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** `count` jobs from `clients` callers; each job's send and ack times into `times`, if given.
 * Answers the phase's duration in ms. */
async function phase(utils, count, prefix, times) {
  let next = 0;
  const caller = async () => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      const send = now();
      // No queue name: a graphile-worker queue runs its jobs one at a time, in order.
      await withTimeout(utils.addJob("noop", { id: `${prefix}${i}` }), submitTimeoutMs);
      if (times) times[i] = [send, now()];
    }
  };
  const started = now();
  await Promise.all(Array.from({ length: clients }, caller));
  return now() - started;
}

async function main() {
  // graphile-worker's default pool of 10, more when more callers need a connection each.
  const utils = await makeWorkerUtils({
    connectionString: databaseUrl,
    maxPoolSize: Math.max(10, clients),
    logger,
  });
  const stdin = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

  await phase(utils, warmupJobs, "warmup-");
  say("warm");
  const go = await stdin.next();
  if (go.done || go.value.trim() !== "go") fail(`expected go on stdin, got ${JSON.stringify(go.value)}`);

  const times = new Array(jobs);
  const elapsed = await phase(utils, jobs, "run-", times);
  say(`done ${elapsed}`);

  while (!(await stdin.next()).done) {
    // Nothing else is expected; the bench closes stdin when it has read the CPU time.
  }
  const lines = times.map(([send, ack], i) => JSON.stringify({ id: `run-${i}`, send, ack }));
  fs.writeFileSync(outPath, lines.join("\n") + "\n");
  await utils.release();
}

main().catch((error) => fail(error.stack ?? String(error)));
