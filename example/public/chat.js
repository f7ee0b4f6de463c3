/* global document, location, WebSocket */
// The chat page's only script: one WebSocket to /ws, reconnected with
// backoff. Everything a frame carries is rendered with textContent, never
// as HTML: messages come from other users.

const WS_URL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`
const PRICES_TOPIC = 'prices'
const DIE_SIDES = 6
// Keeps idle connections from being cut by proxies between here and the server.
const PING_INTERVAL_MS = 20_000
const RECONNECT_BASE_MS = 500
const RECONNECT_MAX_MS = 10_000
const MAX_RENDERED = 200

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
  prices: $('prices').tBodies[0]
}

let socket = null
let clientId = null
let failures = 0
let pingTimer = null
const priceRows = new Map()

function connect () {
  setStatus(failures === 0 ? 'connecting' : 'reconnecting')
  socket = new WebSocket(WS_URL)
  socket.addEventListener('message', (event) => onFrame(event.data))
  // An 'error' event is always followed by 'close', which does the work.
  socket.addEventListener('close', onClose)
}

function onClose (event) {
  clearInterval(pingTimer)
  socket = null
  clientId = null
  ui.clientId.textContent = '…'
  setConnected(false)
  failures++
  // Exponential backoff with jitter, so a restarted server is not hit by
  // every page at the same instant.
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** (failures - 1))
  const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2)
  const reason = event.reason === '' ? '' : `: ${event.reason}`
  render('system', 'page', `Disconnected (code ${event.code}${reason}). Reconnecting in ${(delay / 1000).toFixed(1)} s.`)
  setStatus('reconnecting')
  setTimeout(connect, delay)
}

function onFrame (data) {
  let frame
  try {
    frame = JSON.parse(data)
  } catch {
    render('error', 'page', `Unreadable frame: ${data}`)
    return
  }
  switch (frame.type) {
    case 'welcome':
      clientId = frame.clientId
      if (failures > 0) render('system', 'page', 'Reconnected.')
      failures = 0
      ui.clientId.textContent = clientId
      setStatus('connected')
      setConnected(true)
      send({ type: 'subscribe', topic: PRICES_TOPIC })
      pingTimer = setInterval(() => send({ type: 'ping' }), PING_INTERVAL_MS)
      break
    case 'message':
      render('message', frame.from === clientId ? 'you' : frame.from, text(frame.message), frame.timestamp)
      break
    case 'direct':
      render('direct', `${frame.from} → you`, text(frame.message), frame.timestamp)
      break
    case 'server-broadcast':
      render('server-broadcast', 'server', text(frame.message), frame.timestamp)
      break
    case 'publish':
      if (frame.topic === PRICES_TOPIC && isTick(frame.message)) showPrice(frame.message)
      else render('publish', `${frame.from} on ${frame.topic}`, text(frame.message), frame.timestamp)
      break
    case 'system':
      render('system', 'system', text(frame.message), frame.timestamp)
      break
    case 'error':
      render('error', 'error', `${frame.code}: ${frame.message}`, frame.timestamp)
      break
    case 'rolled':
      render('rolled', 'you rolled', `${frame.value} on a d${frame.sides}`, frame.timestamp)
      break
    case 'pong':
    case 'ack':
      break
    default:
      render(String(frame.type), String(frame.type), JSON.stringify(frame), frame.timestamp)
  }
}

function send (frame) {
  if (socket === null || socket.readyState !== WebSocket.OPEN) return false
  socket.send(JSON.stringify(frame))
  return true
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault()
  const message = ui.message.value.trim()
  if (message === '') return
  if (send({ type: 'broadcast', message })) ui.message.value = ''
})

ui.sendDirect.addEventListener('click', () => {
  const message = ui.message.value.trim()
  const target = ui.target.value.trim()
  if (message === '' || target === '') {
    render('error', 'page', 'A direct message needs both a message and a client id.')
    return
  }
  // The server does not echo direct messages to their sender; show it here.
  // An unknown id comes back as an error frame.
  if (send({ type: 'direct', target, message })) {
    render('sent', `you → ${target}`, message)
    ui.message.value = ''
  }
})

ui.roll.addEventListener('click', () => send({ type: 'roll', sides: DIE_SIDES }))

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
  for (const button of [ui.sendBroadcast, ui.sendDirect, ui.roll]) button.disabled = !connected
}

connect()
