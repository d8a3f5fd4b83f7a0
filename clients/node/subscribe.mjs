#!/usr/bin/env node
// auflow wire format v1 subscriber in Node.js (docs/protocol.md): proves the stream is language-neutral.
//
//   node subscribe.mjs [options] ENDPOINT [ENDPOINT...]
//
//   --topic T             topic prefix to subscribe to, e.g. result/cam1/ (repeatable; default: everything)
//   --count N             stop after N messages
//   --timeout S           stop after S seconds without a message
//   --curve-server-key K  the publisher's CURVE public key (40-character Z85 text, or its NAME.key file)
//   --fail-on-gap         exit with status 3 when results were lost
//
// Prints every message as one JSON line on stdout (64-bit integers such as t_publish_ns keep every
// digit), lost results as {"gap": ...} lines on stderr, and a {"summary": ...} line on stderr at the end.
// Malformed messages are skipped and counted, never fatal.

import { readFileSync } from "node:fs"
import process from "node:process"
import { Decoder } from "@msgpack/msgpack"
import * as zmq from "zeromq"

const MAX_MESSAGE_BYTES = 4 * 1024 * 1024
const MAX_CONTAINER_LEN = 100_000
const SCHEMA_VERSION = 1
const COMMON_KEYS = ["v", "type", "cam", "sid", "t_publish_ns"]
const REQUIRED = {
  result: ["seq", "frame", "pts", "time_base", "t_capture_ns", "latency_ms", "models", "faces"],
  window: ["track", "start_seq", "end_seq", "expr"],
  status: ["state", "fps_in", "fps_out", "dropped", "decode_errors", "queue", "last_seq"],
  eos: ["reason", "last_seq"],
}

function parseArgs(argv) {
  const opts = { topics: [], endpoints: [], count: 0, timeoutS: null, serverKey: null, failOnGap: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (a === "--topic" || a === "-t") opts.topics.push(value())
    else if (a === "--count" || a === "-n") opts.count = Number.parseInt(value(), 10)
    else if (a === "--timeout") opts.timeoutS = Number.parseFloat(value())
    else if (a === "--curve-server-key") opts.serverKey = value()
    else if (a === "--fail-on-gap") opts.failOnGap = true
    else if (a === "--help" || a === "-h") usage()
    else if (a.startsWith("-")) usage(`unknown option ${a}`)
    else opts.endpoints.push(a)
  }
  if (opts.endpoints.length === 0) usage("give at least one endpoint, e.g. tcp://127.0.0.1:5555")
  if (opts.topics.length === 0) opts.topics.push("")
  return opts
}

function usage(error) {
  const text = "usage: node subscribe.mjs [--topic T]... [--count N] [--timeout S] [--curve-server-key K] [--fail-on-gap] ENDPOINT..."
  if (error) {
    process.stderr.write(`error: ${error}\n${text}\n`)
    process.exit(2)
  }
  process.stdout.write(`${text}\n`)
  process.exit(0)
}

function serverKey(key) {
  if (/^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/.test(key)) return key
  const m = readFileSync(key, "utf8").match(/public-key\s*=\s*"([^"]{40})"/)
  if (!m) throw new Error(`${key} holds no CURVE public key`)
  return m[1]
}

// JSON with BigInt written as plain digits: JSON.stringify cannot, and numbers lose digits past 2**53.
function toJson(x) {
  if (x === null || x === undefined) return "null"
  if (typeof x === "bigint") return x.toString()
  if (typeof x === "number") return Number.isFinite(x) ? JSON.stringify(x) : "null"
  if (typeof x === "string" || typeof x === "boolean") return JSON.stringify(x)
  if (x instanceof Uint8Array) return JSON.stringify(Buffer.from(x).toString("base64"))
  if (Array.isArray(x)) return `[${x.map(toJson).join(",")}]`
  if (x instanceof Map) return `{${[...x].map(([k, v]) => `${JSON.stringify(String(k))}:${toJson(v)}`).join(",")}}`
  return `{${Object.entries(x).map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(",")}}`
}

const isInt = (x) => typeof x === "bigint" || Number.isInteger(x)

class WireError extends Error {}

const decoder = new Decoder({
  useBigInt64: true, // int64/uint64 (e.g. nanosecond timestamps) as BigInt: every digit kept
  maxStrLength: MAX_MESSAGE_BYTES,
  maxBinLength: MAX_MESSAGE_BYTES,
  maxArrayLength: MAX_CONTAINER_LEN,
  maxMapLength: MAX_CONTAINER_LEN,
  maxExtLength: 0, // v1 uses no extension types
})

// The same checks as auflow.engine.wire.format.decode (tolerant: a newer v is read for the keys it shares).
function decode(frames) {
  if (frames.length !== 2) throw new WireError(`a wire v1 message has 2 frames [topic, header], got ${frames.length}`)
  const [rawTopic, body] = frames
  if (body.length > MAX_MESSAGE_BYTES) throw new WireError(`header of ${body.length} bytes exceeds the limit`)
  const topic = new TextDecoder("utf-8", { fatal: true }).decode(rawTopic)
  let h
  try {
    h = decoder.decode(body)
  } catch (e) {
    throw new WireError(`header on ${topic} is not valid msgpack: ${e.message}`)
  }
  if (h === null || typeof h !== "object" || Array.isArray(h)) throw new WireError(`header on ${topic} is not a map`)
  const missing = COMMON_KEYS.filter((k) => !(k in h))
  if (missing.length) throw new WireError(`header on ${topic} lacks ${missing}`)
  if (!isInt(h.v) || h.v < 1) throw new WireError(`bad schema version ${h.v}`)
  for (const k of ["type", "cam", "sid"]) {
    if (typeof h[k] !== "string" || !h[k]) throw new WireError(`header '${k}' must be a non-empty string`)
  }
  if (topic !== `${h.type}/${h.cam}/`) throw new WireError(`topic ${topic} does not match type/cam of its header`)
  const required = REQUIRED[h.type]
  if (!required) {
    if (Number(h.v) > SCHEMA_VERSION) return { topic, header: h }
    throw new WireError(`unknown message type ${h.type}`)
  }
  const lacks = required.filter((k) => !(k in h))
  if (lacks.length) throw new WireError(`${h.type} message lacks ${lacks}`)
  for (const k of ["seq", "frame", "last_seq", "start_seq", "end_seq"]) {
    if (required.includes(k) && !isInt(h[k])) throw new WireError(`${h.type} key ${k} must be an integer`)
  }
  if (h.type === "result" && !Array.isArray(h.faces)) throw new WireError("result key 'faces' must be a list")
  return { topic, header: h }
}

// Per (cam, sid): the last seq seen. A jump in seq is loss; eos.last_seq shows loss at the very end.
class GapTracker {
  constructor() {
    this.last = new Map()
    this.lost = 0
    this.received = 0
  }

  update(h) {
    const key = `${h.cam}\u0000${h.sid}`
    let gap = 0
    if (h.type === "result") {
      const seq = Number(h.seq)
      const prev = this.last.has(key) ? this.last.get(key) : -1
      gap = Math.max(seq - prev - 1, 0)
      this.last.set(key, seq)
    } else if (h.type === "eos") {
      const prev = this.last.has(key) ? this.last.get(key) : -1
      gap = Math.max(Number(h.last_seq) - prev, 0)
      this.last.delete(key)
    }
    this.lost += gap
    return gap
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const sock = new zmq.Subscriber({
    linger: 0,
    receiveHighWaterMark: 1000,
    maxMessageSize: MAX_MESSAGE_BYTES,
    reconnectMaxInterval: 5000,
    ...(opts.timeoutS !== null ? { receiveTimeout: Math.round(opts.timeoutS * 1000) } : {}),
  })
  if (opts.serverKey) {
    const pair = zmq.curveKeyPair() // a throwaway client pair: the server's public key is what matters
    sock.curveServerKey = serverKey(opts.serverKey)
    sock.curvePublicKey = pair.publicKey
    sock.curveSecretKey = pair.secretKey
  }
  for (const ep of opts.endpoints) sock.connect(ep)
  sock.subscribe(...opts.topics)

  const gaps = new GapTracker()
  let garbage = 0
  let n = 0
  let stop = false
  process.on("SIGINT", () => {
    stop = true
    sock.close()
  })
  try {
    while (!stop && (!opts.count || n < opts.count)) {
      let frames
      try {
        frames = await sock.receive()
      } catch (e) {
        if (e.code === "EAGAIN" || stop) break // receiveTimeout passed without a message, or closed
        throw e
      }
      let msg
      try {
        msg = decode(frames)
      } catch (e) {
        if (!(e instanceof WireError) && !(e instanceof TypeError)) throw e
        garbage++
        process.stderr.write(`${toJson({ skipped: e.message })}\n`)
        continue
      }
      gaps.received++
      const gap = gaps.update(msg.header)
      if (gap) process.stderr.write(`${toJson({ gap, cam: msg.header.cam, sid: msg.header.sid, type: msg.header.type })}\n`)
      process.stdout.write(`${toJson(msg.header)}\n`)
      n++
    }
  } finally {
    if (!sock.closed) sock.close()
  }
  process.stderr.write(`${toJson({ summary: { received: gaps.received, lost: gaps.lost, garbage } })}\n`)
  if (opts.failOnGap && gaps.lost > 0) process.exitCode = 3
}

main().catch((e) => {
  process.stderr.write(`error: ${e.message}\n`)
  process.exit(1)
})
