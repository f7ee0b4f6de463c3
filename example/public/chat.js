/* global document, location, localStorage, crypto, CSS */
// The chat page's only script. It talks to the hub through the typed client
// (`fastify-ws-hub/client`, served from /client/), which reconnects with
// backoff, subscribes again after a reconnect, pings, and settles every
// request on its ack or error. Everything a frame carries is rendered with
// textContent, never as HTML: messages come from other users.
import { HubClient } from '/client/index.js'

// The demo's user: picked once and kept, so every tab of this browser is
// one user with several devices. The example's server takes it as given
// (a real app authenticates instead).
const USER_ID = demoUser()
const INBOX_TOPIC = `user:${USER_ID}`
const WS_URL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?user=${encodeURIComponent(USER_ID)}`
const PRICES_TOPIC = 'prices'
const INBOX_SHOWN = 20
const DIE_SIDES = 6
const MAX_RENDERED = 200
// Frames with a renderer of their own; any other type is shown as JSON.
const KNOWN_TYPES = new Set(['welcome', 'message', 'direct', 'server-broadcast', 'publish', 'system', 'error', 'rolled', 'pong', 'ack'])

const $ = (id) => document.getElementById(id)
const ui = {
  status: $('status'),
  clientId: $('client-id'),
  messages: $('messages'),
  form: $('chat-form'),
  message: $('message-input'),
  target: $('target-input'),
  sendBroadcast: $('send-broadcast'),
  sendDirect: $('send-direct'),
  roll: $('roll'),
  prices: $('prices').tBodies[0],
  inboxTopic: $('inbox-topic'),
  notifications: $('notifications'),
  notificationsStatus: $('notifications-status'),
  notifyMe: $('notify-me')
}
ui.inboxTopic.textContent = INBOX_TOPIC
const priceRows = new Map()

const client = new HubClient(WS_URL, {
  // Keeps idle connections from being cut by proxies, and notices a dead server.
  pingIntervalMs: 20_000,
  reconnect: { initialDelayMs: 500, maxDelayMs: 10_000, factor: 2, jitter: 0.5 }
})

// ---- the connection's life ----

client.on('state', ({ state }) => {
  // 'open' is shown by the open event, once the topics are subscribed again.
  if (state === 'open') return
  setStatus(state)
  setConnected(false)
  ui.clientId.textContent = '…'
})

client.on('open', ({ clientId, reconnected }) => {
  ui.clientId.textContent = clientId
  setStatus('connected')
  setConnected(true)
  if (reconnected) render('system', 'page', 'Reconnected.')
  // The client subscribes its topics again after a reconnect; this covers
  // the first connection and a subscribe that was cut off.
  if (!client.topics.includes(PRICES_TOPIC)) client.subscribe(PRICES_TOPIC).catch(report)
  if (!client.topics.includes(INBOX_TOPIC)) openInbox().catch(report)
})

let wasOpen = false
client.on('open', () => { wasOpen = true })
client.on('close', ({ code, reason, willReconnect }) => {
  // Failed attempts while the server is away are not news; losing it is.
  if (!wasOpen) return
  wasOpen = false
  const why = reason === '' ? '' : `: ${reason}`
  render('system', 'page', `Disconnected (code ${code}${why}). ${willReconnect ? 'Reconnecting…' : 'Reload the page to connect again.'}`)
})

client.on('invalid-frame', ({ data }) => render('error', 'page', `Unreadable frame: ${String(data)}`))

// ---- frames ----

client.on('message', (frame) => render('message', frame.from === client.clientId ? 'you' : frame.from, text(frame.message), frame.timestamp))
client.on('direct', (frame) => render('direct', `${frame.from} → you`, text(frame.message), frame.timestamp))
client.on('server-broadcast', (frame) => render('server-broadcast', 'server', text(frame.message), frame.timestamp))
client.on('publish', (frame) => {
  if (frame.topic === PRICES_TOPIC && isTick(frame.message)) showPrice(frame.message)
  else if (frame.topic === INBOX_TOPIC) showNotification(frame)
  else render('publish', `${frame.from} on ${frame.topic}`, text(frame.message), frame.timestamp)
})
client.on('system', (frame) => render('system', 'system', text(frame.message), frame.timestamp))
client.on('error', (frame) => render('error', 'error', `${frame.code}: ${frame.message}`, frame.timestamp))
client.on('rolled', (frame) => render('rolled', 'you rolled', `${frame.value} on a d${frame.sides}`, frame.timestamp))
client.on('*', (frame) => {
  if (!KNOWN_TYPES.has(frame.type)) render(String(frame.type), String(frame.type), JSON.stringify(frame), frame.timestamp)
})

/**
 * A rejected request: the server's refusals already arrived as error frames
 * (rendered above); the client's own (timeout, disconnected) are shown here.
 */
function report (err) {
  if (err?.frame === undefined) render('error', 'page', err instanceof Error ? err.message : String(err))
}

// ---- the form ----

ui.form.addEventListener('submit', (event) => {
  event.preventDefault()
  const message = ui.message.value.trim()
  if (message === '') return
  ui.message.value = ''
  client.broadcast(message).catch((err) => {
    if (ui.message.value === '') ui.message.value = message
    report(err)
  })
})

ui.sendDirect.addEventListener('click', () => {
  const message = ui.message.value.trim()
  const target = ui.target.value.trim()
  if (message === '' || target === '') {
    render('error', 'page', 'A direct message needs both a message and a client id.')
    return
  }
  ui.message.value = ''
  // The server does not echo direct messages to their sender: show it once
  // acked. An unknown id comes back as an unknown_target error.
  client.direct(target, message).then(() => render('sent', `you → ${target}`, message), (err) => {
    if (ui.message.value === '') ui.message.value = message
    report(err)
  })
})

ui.roll.addEventListener('click', () => {
  client.request({ type: 'roll', sides: DIE_SIDES }).catch(report)
})

ui.notifyMe.addEventListener('click', () => {
  client.request({ type: 'notify-me' }).catch(report)
})

// ---- the inbox: a personal topic with history ----

// After a reconnect the client resubscribes with the last offset it saw:
// what was published meanwhile arrives as publish events first, then
// 'recovered'; if it was too long ago, 'reset' says so and the panel reloads
// from the history the server keeps.
client.on('recovered', ({ topic, count }) => {
  if (topic === INBOX_TOPIC) setInboxStatus(count === 0 ? 'Up to date after reconnecting.' : `Recovered ${count} missed notification${count === 1 ? '' : 's'}.`)
})
client.on('reset', ({ topic }) => {
  if (topic !== INBOX_TOPIC) return
  setInboxStatus('Some notifications could not be recovered; reloaded.')
  loadInbox(true).catch(report)
})

/** The first subscribe: then the latest kept notifications, shown once each (by offset). */
async function openInbox () {
  await client.subscribe(INBOX_TOPIC)
  await loadInbox(false)
}

async function loadInbox (replace) {
  const { publications } = await client.history(INBOX_TOPIC, { limit: INBOX_SHOWN })
  if (replace) ui.notifications.replaceChildren()
  for (const publication of publications) showNotification(publication)
}

function showNotification ({ offset, epoch, message }) {
  const key = `${epoch}/${offset}`
  if (ui.notifications.querySelector(`li[data-key="${CSS.escape(key)}"]`) !== null) return
  const item = document.createElement('li')
  item.dataset.key = key
  item.dataset.offset = String(offset)
  const at = typeof message?.at === 'string' ? new Date(message.at) : new Date()
  const time = document.createElement('time')
  time.dateTime = at.toISOString()
  time.textContent = at.toLocaleTimeString()
  const content = document.createElement('span')
  content.textContent = typeof message?.text === 'string' ? message.text : text(message)
  item.append(time, ' ', content)
  // Newest first, in offset order whatever the arrival order.
  const later = [...ui.notifications.children].find((li) => Number(li.dataset.offset) < offset)
  ui.notifications.insertBefore(item, later ?? null)
  while (ui.notifications.childElementCount > INBOX_SHOWN) ui.notifications.lastElementChild.remove()
}

function setInboxStatus (message) {
  ui.notificationsStatus.textContent = message
}

function demoUser () {
  const KEY = 'fastify-ws-hub-demo-user'
  let id = localStorage.getItem(KEY)
  if (id === null) {
    id = `u-${crypto.randomUUID().slice(0, 8)}`
    localStorage.setItem(KEY, id)
  }
  return id
}

// ---- rendering ----

function render (type, who, body, timestamp) {
  const item = document.createElement('li')
  item.dataset.type = type
  const time = document.createElement('time')
  const at = timestamp === undefined ? new Date() : new Date(timestamp)
  time.dateTime = at.toISOString()
  time.textContent = at.toLocaleTimeString()
  const author = document.createElement('strong')
  author.textContent = who
  const content = document.createElement('span')
  content.textContent = body
  item.append(time, ' ', author, ' ', content)
  ui.messages.append(item)
  while (ui.messages.childElementCount > MAX_RENDERED) ui.messages.firstElementChild.remove()
  ui.messages.scrollTop = ui.messages.scrollHeight
}

function showPrice ({ symbol, price }) {
  let row = priceRows.get(symbol)
  if (row === undefined) {
    const tr = document.createElement('tr')
    tr.dataset.symbol = symbol
    const name = document.createElement('th')
    name.scope = 'row'
    name.textContent = symbol
    const value = document.createElement('td')
    tr.append(name, value)
    ui.prices.append(tr)
    row = { tr, value, last: price }
    priceRows.set(symbol, row)
  }
  row.tr.dataset.trend = price > row.last ? 'up' : price < row.last ? 'down' : 'flat'
  row.value.textContent = price.toFixed(2)
  row.last = price
}

function isTick (value) {
  return value !== null && typeof value === 'object' && typeof value.symbol === 'string' && typeof value.price === 'number'
}

function text (value) {
  return typeof value === 'string' ? value : JSON.stringify(value)
}

function setStatus (state) {
  ui.status.dataset.state = state
  ui.status.textContent = state
}

function setConnected (connected) {
  for (const button of [ui.sendBroadcast, ui.sendDirect, ui.roll, ui.notifyMe]) button.disabled = !connected
}

client.connect().catch(report)
