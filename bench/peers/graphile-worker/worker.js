"use strict";
// The worker of `ordo bench queue --system graphile-worker`: graphile-worker with
// PEER_SLOTS concurrent jobs and one no-op task, on the database at PEER_DATABASE_URL. For
// every job it appends one NDJSON line to PEER_OUT once the job's completion is committed:
// {"id": <the client's id from the payload>, "start", "complete" (epoch ms), "starts",
// "failures"}. Prints `ready` once migrated and listening; stops on SIGTERM.
//
// Which instant counts as complete. In graphile-worker 0.17.3 (dist/worker.js) `job:success`
// fires after the task returned, before the completion is sent, and `job:complete` right
// after `completeJob(job)` is called without being awaited: the DELETE of the job's row runs
// in the background while the slot already fetches its next job. Its typings say
// job:complete comes once the result "has been written back to the database", but with
// this code it comes before that. Neither event fires after the commit, so the time is taken
// where the commit is known: when PostgreSQL answers that DELETE (one statement outside any
// transaction, so its answer means committed), seen through the pool's Client class.

// graphile-worker's own switch to skip its per-job "Completed task" line; read when the
// module loads, so it is set before anything requires it.
process.env.NO_LOG_SUCCESS ??= "1";

const fs = require("node:fs");
const { EventEmitter } = require("node:events");
const pg = require("pg");
const { run } = require("graphile-worker");
const { now, setting, integerSetting, fail, logger, say } = require("./lib");

const databaseUrl = setting("PEER_DATABASE_URL");
const slots = integerSetting("PEER_SLOTS");
const out = fs.openSync(setting("PEER_OUT"), "a");

/** graphile-worker's completion statements (`complete_job`, `complete_jobs`, `complete_job_q`
 * in sql/completeJobs.js): a DELETE from its jobs table, its first parameter the job id or
 * ids. */
const COMPLETE_JOBS = /^\s*(?:with j as \(\s*)?delete from \S+\._private_jobs\b/;

/** Started jobs by graphile's job id, until their completion is committed. */
const running = new Map();

function started(job) {
  let record = running.get(job.id);
  if (!record) {
    record = { id: job.payload?.id, start: now(), starts: 0, failures: 0 };
    running.set(job.id, record);
  }
  record.starts += 1;
}

function committed(jobIds, at) {
  for (const jobId of jobIds) {
    const record = running.get(String(jobId));
    if (!record) continue;
    running.delete(String(jobId));
    // A synchronous append: the line is in the file the moment the bench may look for it.
    fs.writeSync(out, `${JSON.stringify({ ...record, complete: at })}\n`);
  }
}

/** A pg Client that notes when a completion statement of graphile-worker answered. */
class CompletionClient extends pg.Client {
  query(config, values, callback) {
    const result = super.query(config, values, callback);
    if (
      typeof config?.text === "string" &&
      COMPLETE_JOBS.test(config.text) &&
      typeof result?.then === "function"
    ) {
      const jobIds = [].concat(config.values[0]);
      // A failed DELETE is graphile-worker's to handle (it retries, or shuts the pool down).
      result.then(
        () => committed(jobIds, now()),
        () => {},
      );
    }
    return result;
  }
}

async function main() {
  // One connection per slot, one for LISTEN and one spare: graphile-worker warns when its
  // pool is smaller than its concurrency.
  const pool = new pg.Pool({ connectionString: databaseUrl, max: slots + 2, Client: CompletionClient });
  // The handlers graphile-worker asks a pool it is given to have (else it warns and adds its
  // own): pg drops a broken connection itself, they only log.
  const logError = (error) => console.error(`PostgreSQL client error: ${error.message}`);
  pool.on("error", logError);
  pool.on("connect", (client) => client.on("error", logError));

  const events = new EventEmitter();
  events.on("job:start", ({ job }) => started(job));
  events.on("job:error", ({ job }) => {
    const record = running.get(job.id);
    if (record) record.failures += 1;
  });
  const listening = new Promise((resolve) => events.once("pool:listen:success", resolve));

  // Migrates the database (graphile_worker schema) before the first job is fetched.
  const runner = await run({
    pgPool: pool,
    concurrency: slots,
    noHandleSignals: true,
    logger,
    events,
    taskList: { noop: async () => {} },
  });
  runner.promise.catch((error) => fail(`graphile-worker stopped: ${error.stack ?? error}`));
  await listening;
  say("ready");

  let stopping = false;
  process.on("SIGTERM", async () => {
    if (stopping) return;
    stopping = true;
    try {
      await runner.stop();
      await pool.end();
    } catch (error) {
      fail(`stop: ${error.stack ?? error}`);
    }
    fs.closeSync(out);
    process.exit(0);
  });
}

main().catch((error) => fail(error.stack ?? String(error)));
