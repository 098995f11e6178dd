"use strict";
// What the worker and the client share: settings from the environment (set by `ordo bench
// queue --system graphile-worker`), the clock, and a logger as quiet as Ordo's in the bench.

const { performance } = require("node:perf_hooks");
const { Logger, consoleLogFactory } = require("graphile-worker");

/** Epoch milliseconds with sub-millisecond precision; both processes use the same clock. */
function now() {
  return performance.timeOrigin + performance.now();
}

/** The setting `name` from the environment; exits with a message when it is missing. */
function setting(name) {
  const value = process.env[name];
  if (value === undefined || value === "") {
    fail(`${name} is not set (this script is started by ordo bench queue)`);
  }
  return value;
}

function integerSetting(name) {
  const value = Number(setting(name));
  if (!Number.isInteger(value) || value < 0) {
    fail(`${name} must be a non-negative integer, not ${process.env[name]}`);
  }
  return value;
}

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(1);
}

/** Warnings and errors only: the Ordo processes of the bench log at `warn` too. */
const logger = new Logger((scope) => {
  const log = consoleLogFactory(scope);
  return (level, message, meta) => {
    if (level === "error" || level === "warning") {
      log(level, message, meta);
    }
  };
});

/** The protocol with the bench: one line per message on stdout. */
function say(line) {
  process.stdout.write(`${line}\n`);
}

module.exports = { now, setting, integerSetting, fail, logger, say };
