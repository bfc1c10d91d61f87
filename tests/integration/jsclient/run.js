// Runs one test script with the official OpenWhisk client: reads {script, apihost,
// api_key, args} as JSON on stdin and prints {value} or {error: {statusCode, body, message}}.
'use strict'

const fs = require('fs')
const openwhisk = require('openwhisk')

// What scripts may use beside the client, as their third argument (`apihost` is set once
// the request is read).
const helpers = {
  apihost: null,

  // A blocking invoke's record, polled when a cold start outlasted the blocking wait (202).
  async invoke (ow, options) {
    const answer = await ow.actions.invoke({ ...options, blocking: true })
    return answer.response ? answer : await helpers.record(ow, answer.activationId)
  },

  // {value} of a call that succeeds, {statusCode, body} of one the platform refused: so
  // that one script can make calls that are meant to fail.
  async attempt (promise) {
    try {
      return { value: await promise }
    } catch (error) {
      if (error.statusCode === undefined) throw error
      return { statusCode: error.statusCode, body: error.error }
    }
  },

  // A plain HTTP request to the platform (web actions): status, headers and body text.
  async fetch (path, init) {
    const response = await fetch(helpers.apihost + path, init)
    return { status: response.status, headers: Object.fromEntries(response.headers),
      body: await response.text() }
  },

  // The activation's record once it is stored (a blocking invoke that outlasted its wait
  // answered 202 with the id only): polled, for at most 10 minutes.
  async record (ow, activationId) {
    for (let tries = 0; tries < 1200; tries++) {
      try {
        return await ow.activations.get({ name: activationId })
      } catch (error) {
        if (error.statusCode !== 404) throw error
      }
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    throw new Error(`no record of activation ${activationId}`)
  }
}

async function main () {
  const request = JSON.parse(fs.readFileSync(0, 'utf8'))
  helpers.apihost = request.apihost
  const ow = openwhisk({ apihost: request.apihost, api_key: request.api_key, ignore_certs: true })
  const script = require(request.script)
  try {
    const value = await script(ow, request.args, helpers)
    process.stdout.write(JSON.stringify({ value: value === undefined ? null : value }))
  } catch (error) {
    process.stdout.write(JSON.stringify({
      error: { statusCode: error.statusCode, body: error.error, message: String(error.message) }
    }))
  }
}

main().catch(error => {
  process.stderr.write(String(error && error.stack))
  process.exit(1)
})
