// The kernel's glue inside a JavaScript strategy's V8 context. Evaluated once per worker (one fresh
// isolate per strategy) BEFORE the user's script. Its job:
//   1. remove what a strategy must not have (WebAssembly, Atomics, WeakRef/FinalizationRegistry,
//      eval and every Function constructor), then freeze every intrinsic reachable from globalThis,
//      so the script cannot redefine JSON.stringify, Function.prototype.apply, Array.prototype.push,
//      getters on Object.prototype... that the glue (or the next call) would use;
//   2. keep the glue in this closure: the only global it adds is one non-writable, non-configurable,
//      non-enumerable property under a random name, holding a *bound* function (its source reads as
//      "[native code]") that refuses to run while any call is in progress, i.e. whenever user code
//      could be running;
//   3. drive the callbacks: build ctx/bar objects, collect requests, serialize results with the
//      JSON.stringify captured here. Everything returned is validated again in Python.
// Python calls it as  TOKEN(op, ...)  and gets back a JSON string (or an ArrayBuffer for bulk data).
(function (TOKEN, KEY, SCRIPT_URL, LIMITS_JSON) {
  'use strict';
  const G = globalThis;
  const ObjectC = Object, ArrayC = Array, ErrorC = Error, StringC = String, NumberC = Number;
  const freeze = ObjectC.freeze, defineProperty = ObjectC.defineProperty, isFrozen = ObjectC.isFrozen;
  const getOwnPropertyNames = ObjectC.getOwnPropertyNames, getOwnPropertySymbols = ObjectC.getOwnPropertySymbols;
  const getOwnPropertyDescriptor = ObjectC.getOwnPropertyDescriptor, getPrototypeOf = ObjectC.getPrototypeOf;
  const stringify = JSON.stringify, parse = JSON.parse;
  const isFiniteN = NumberC.isFinite, isInteger = NumberC.isInteger;
  const F64 = Float64Array, I32 = Int32Array, AB = ArrayBuffer, BI64 = BigInt64Array, EvalErrorC = EvalError;
  const MapC = Map, SetC = Set;
  const dateNow = Date.now;
  const RealFunction = Function;
  const RegExpC = RegExp;
  const LIMITS = parse(LIMITS_JSON);

  // ---- 1. take away, then freeze ---------------------------------------------------------------
  for (const name of ['WebAssembly', 'Atomics', 'SharedArrayBuffer', 'WeakRef', 'FinalizationRegistry',
                      'setTimeout', 'setInterval', 'setImmediate', 'queueMicrotask']) {
    delete G[name];
  }
  const refuse = (what) => function () {
    throw new EvalErrorC(what + ' is not allowed in strategy scripts (no code generation from strings)');
  };
  const fakeEval = refuse('eval');
  defineProperty(G, 'eval', { value: fakeEval, writable: false, configurable: false, enumerable: false });
  const fakeFunction = refuse('the Function constructor');
  fakeFunction.prototype = RealFunction.prototype;
  defineProperty(G, 'Function', { value: fakeFunction, writable: false, configurable: false, enumerable: false });
  const functionPrototypes = [
    RealFunction.prototype,
    getPrototypeOf(function* () {}),
    getPrototypeOf(async function () {}),
    getPrototypeOf(async function* () {}),
  ];
  for (const proto of functionPrototypes) {
    defineProperty(proto, 'constructor', { value: fakeFunction, writable: false, configurable: false });
  }
  const seen = new SetC();
  const hardenQueue = [];
  const enqueue = (v) => {
    if ((typeof v === 'object' && v !== null) || typeof v === 'function') {
      if (!seen.has(v)) { seen.add(v); hardenQueue.push(v); }
    }
  };
  for (const name of getOwnPropertyNames(G)) {
    if (name === TOKEN) continue;
    const d = getOwnPropertyDescriptor(G, name);
    if (d && 'value' in d && d.value !== G) enqueue(d.value);
  }
  // intrinsics not reachable by name
  for (const v of functionPrototypes) enqueue(v);
  enqueue(getPrototypeOf(Int8Array));
  enqueue(getPrototypeOf([][Symbol.iterator]()));
  enqueue(getPrototypeOf(new MapC()[Symbol.iterator]()));
  enqueue(getPrototypeOf(new SetC()[Symbol.iterator]()));
  enqueue(getPrototypeOf(''[Symbol.iterator]()));
  enqueue(getPrototypeOf(/a/[Symbol.matchAll]('a')));
  enqueue(getPrototypeOf((function* () {})()));
  enqueue(getPrototypeOf((async function* () {})()));
  enqueue(getPrototypeOf(G));
  while (hardenQueue.length) {
    const obj = hardenQueue.pop();
    freeze(obj);
    enqueue(getPrototypeOf(obj));
    const keys = getOwnPropertyNames(obj);
    const syms = getOwnPropertySymbols(obj);
    for (let k = 0; k < syms.length; k++) keys.push(syms[k]);
    for (let k = 0; k < keys.length; k++) {
      let d;
      try { d = getOwnPropertyDescriptor(obj, keys[k]); } catch (e) { continue; }
      if (!d) continue;
      if ('value' in d) enqueue(d.value); else { enqueue(d.get); enqueue(d.set); }
    }
  }

  // ---- 2. state of this strategy ---------------------------------------------------------------
  const MAX_ORDERS = LIMITS.max_orders_per_bar, MAX_LOG_LINES = LIMITS.max_log_lines_per_call;
  const MAX_LOG_BYTES = LIMITS.max_log_bytes_per_call, MAX_STATE = LIMITS.max_state_bytes;
  const BATCH_YIELD_MS = LIMITS.batch_timeout_s * 500;
  const MAX_HISTORY = 100000;
  const PRINTABLE = new RegExpC('^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$');
  const SCRIPT_FRAME = new RegExpC(SCRIPT_URL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + ':(\\d+):\\d+');
  const heartbeatBuffer = new AB(8);
  const heartbeat = new I32(heartbeatBuffer);
  let beats = 0;
  let busy = false, inCall = false, lateActivity = false;
  let symbol = '', strategyName = 'script';
  let callbacks = null;
  let params = freeze({});
  let state = {};
  let lastState = '{}';
  let position = freeze({ symbol: '', qty: 0, avgPrice: 0, realizedPnl: 0, isFlat: true });
  let positions = freeze({});
  let account = freeze({ cash: 0, equity: 0, marginUsed: 0, freeMargin: 0, currency: 'USD', leverage: 1 });
  let barIndex = -1;
  // bar columns (ts, open, high, low, close, volume) as Float64Arrays with spare capacity
  let n = 0, cap = 0;
  let cols = [new F64(0), new F64(0), new F64(0), new F64(0), new F64(0), new F64(0)];
  let pendingTs = null;
  const indByKey = new MapC();   // key -> {arr: Float64Array, len}
  const indBySig = new MapC();   // signature string -> key
  // per call
  let orders = [], cancels = [], logs = [], logBytes = 0, logsDropped = 0, fatal = null, need = null;
  let nextId = 0;

  const short = (v) => {
    let s;
    try { s = typeof v === 'string' ? stringify(v) : StringC(v); } catch (e) { s = '<unprintable>'; }
    return s.length <= 60 ? s : s.slice(0, 57) + '...';
  };
  const lineOf = (stack) => {
    if (typeof stack !== 'string') return null;
    const m = SCRIPT_FRAME.exec(stack);
    return m ? NumberC(m[1]) : null;
  };
  const hereLine = () => { try { return lineOf(new ErrorC().stack); } catch (e) { return null; } };
  class Abort {}  // thrown to unwind the script after a fatal rule break; not reachable by the script
  const fail = (kind, message) => {
    if (fatal === null) fatal = { kind, message: StringC(message).slice(0, 300), line: hereLine() };
    throw new ErrorC(message);
  };
  const live = (what) => {
    if (!inCall) {
      lateActivity = true;
      throw new ErrorC('ctx.' + what + ' was used outside a callback (after it returned)');
    }
  };

  // ---- ctx ---------------------------------------------------------------------------------------
  const positiveNumber = (v) => typeof v === 'number' && isFiniteN(v) && v > 0 && v <= 1e12;
  const OPTION_FIELDS = ['stopLoss', 'takeProfit', 'type', 'limitPrice', 'stopPrice', 'symbol', 'tag'];
  const order = (side, qty, opts, reduceOnly, what) => {
    if (orders.length + cancels.length >= MAX_ORDERS) {
      fail('limit', 'more than ' + MAX_ORDERS + ' order requests in one callback');
    }
    let o = {};
    if (opts !== undefined && opts !== null) {
      if (typeof opts !== 'object') fail('runtime', what + ': options must be an object, got ' + short(opts));
      for (const k of OPTION_FIELDS) o[k] = opts[k];  // each getter runs once, here
    }
    if (!positiveNumber(qty)) fail('runtime', what + ': qty must be a positive number, got ' + short(qty));
    const req = { side, qty, type: o.type === undefined ? 'market' : o.type,
                  symbol: o.symbol === undefined || o.symbol === null ? symbol : o.symbol,
                  tag: o.tag === undefined || o.tag === null ? '' : o.tag, reduce_only: reduceOnly };
    if (req.type !== 'market' && req.type !== 'limit' && req.type !== 'stop') {
      fail('runtime', what + ": type must be 'market', 'limit' or 'stop', got " + short(req.type));
    }
    const pairs = [['stopLoss', 'stop_loss'], ['takeProfit', 'take_profit'],
                   ['limitPrice', 'limit_price'], ['stopPrice', 'stop_price']];
    for (const [js, py] of pairs) {
      const v = o[js];
      if (v === undefined || v === null) continue;
      if (!positiveNumber(v)) fail('runtime', what + ': ' + js + ' must be a positive number, got ' + short(v));
      req[py] = v;
    }
    if (req.type === 'limit' && req.limit_price === undefined) fail('runtime', what + ': a limit order needs limitPrice');
    if (req.type === 'stop' && req.stop_price === undefined) fail('runtime', what + ': a stop order needs stopPrice');
    if (typeof req.symbol !== 'string' || req.symbol.length === 0 || req.symbol.length > 64 || !PRINTABLE.test(req.symbol)) {
      fail('runtime', what + ': symbol must be a non-empty string, got ' + short(req.symbol));
    }
    if (typeof req.tag !== 'string' || req.tag.length > 64 || !PRINTABLE.test(req.tag)) {
      fail('runtime', what + ': tag must be a string of at most 64 printable characters, got ' + short(req.tag));
    }
    nextId += 1;
    req.client_id = 'r' + nextId;
    orders.push(req);
    return req.client_id;
  };
  const log = (line) => {
    if (logs.length >= MAX_LOG_LINES || logBytes >= MAX_LOG_BYTES) { logsDropped += 1; return; }
    const room = MAX_LOG_BYTES - logBytes;
    if (line.length > room) line = line.slice(0, room);
    logBytes += line.length;
    logs.push(line);
  };
  const history = (field, count) => {
    live('history');
    const idx = field === undefined ? 4 : ['ts', 'open', 'high', 'low', 'close', 'volume'].indexOf(field);
    if (typeof field !== 'string' && field !== undefined || idx < 0) {
      fail('runtime', 'ctx.history: unknown field ' + short(field) + ' (open, high, low, close, volume, ts)');
    }
    const k = count === undefined ? 1 : count;
    if (!isInteger(k) || k < 1 || k > MAX_HISTORY) {
      fail('runtime', 'ctx.history: n must be an integer from 1 to ' + MAX_HISTORY + ', got ' + short(count));
    }
    if (barIndex < 0) return [];
    const from = barIndex - k + 1 < 0 ? 0 : barIndex - k + 1;
    return ArrayC.from(cols[idx].subarray(from, barIndex + 1));
  };
  const indicator = (name, ...args) => {
    live('indicator');
    let kwargs = {};
    if (args.length && typeof args[args.length - 1] === 'object' && args[args.length - 1] !== null) {
      const raw = args.pop();
      for (const k of ObjectC.keys(raw)) kwargs[k] = raw[k];
    }
    if (typeof name !== 'string' || name.length > 64) fail('runtime', 'ctx.indicator: name must be a string, got ' + short(name));
    for (const a of args) {
      const t = typeof a;
      if (t !== 'number' && t !== 'string' && t !== 'boolean' || (t === 'number' && !isFiniteN(a))) {
        fail('runtime', 'ctx.indicator(' + stringify(name) + '): parameters must be numbers, strings or booleans');
      }
    }
    const sig = stringify([name, args, kwargs]);
    const key = indBySig.get(sig);
    if (key === undefined) {
      // Not here yet: remember what is needed and unwind; the worker fetches it and runs this bar again.
      if (need === null) need = { name, args, kwargs, sig, line: hereLine() };
      throw new Abort();
    }
    const ind = indByKey.get(key);
    if (barIndex < 0 || barIndex >= ind.len) return null;
    const v = ind.arr[barIndex];
    return v === v ? v : null;
  };
  const ctx = {
    get symbol() { return symbol; },
    get barIndex() { return barIndex; },
    get time() { return barIndex >= 0 && barIndex < n ? cols[0][barIndex] : 0; },
    get params() { return params; },
    get state() { return state; },
    set state(v) { live('state'); state = v; },
    get position() { return position; },
    get positions() { return positions; },
    get account() { return account; },
    buy(qty, opts) { live('buy'); return order('buy', qty, opts, false, 'ctx.buy'); },
    sell(qty, opts) { live('sell'); return order('sell', qty, opts, false, 'ctx.sell'); },
    close(sym) {
      live('close');
      const s = sym === undefined || sym === null ? symbol : sym;
      const pos = typeof s === 'string' ? positions[s] : undefined;
      if (pos === undefined || pos.isFlat) return null;
      return order(pos.qty > 0 ? 'sell' : 'buy', pos.qty > 0 ? pos.qty : -pos.qty, { symbol: s, tag: 'close' }, true, 'ctx.close');
    },
    cancel(id) {
      live('cancel');
      if (typeof id !== 'string' || id.length === 0 || id.length > 64 || !PRINTABLE.test(id)) {
        fail('runtime', 'ctx.cancel: order id must be a non-empty string, got ' + short(id));
      }
      if (orders.length + cancels.length >= MAX_ORDERS) fail('limit', 'more than ' + MAX_ORDERS + ' order requests in one callback');
      cancels.push(id);
    },
    indicator,
    history,
    log(...parts) {
      live('log');
      const out = [];
      for (const p of parts) {
        let s;
        try { s = typeof p === 'string' ? p : (typeof p === 'object' && p !== null ? stringify(p) : StringC(p)); } catch (e) { s = '<unprintable>'; }
        out.push(typeof s === 'string' ? s : StringC(s));
      }
      log(out.join(' '));
    },
  };
  freeze(ctx);

  // ---- 3. driving the callbacks --------------------------------------------------------------------
  const freezePlain = (v) => {
    if (typeof v === 'object' && v !== null) { for (const k of ObjectC.keys(v)) freezePlain(v[k]); freeze(v); }
    return v;
  };
  const num = (v, d) => (typeof v === 'number' ? v : d);
  const applySnapshot = (json) => {
    if (json === null || json === undefined) return;
    const snap = parse(json);
    const ps = {};
    const raw = snap.positions || {};
    for (const sym of ObjectC.keys(raw)) {
      const p = raw[sym];
      const qty = num(p.qty, 0);
      ps[sym] = freeze({ symbol: sym, qty, avgPrice: num(p.avg_price, 0), realizedPnl: num(p.realized_pnl, 0),
                         isFlat: (qty < 0 ? -qty : qty) < 1e-12 });
    }
    positions = freeze(ps);
    position = ps[symbol] || freeze({ symbol, qty: 0, avgPrice: 0, realizedPnl: 0, isFlat: true });
    const a = snap.account;
    if (a) {
      account = freeze({ cash: num(a.cash, 0), equity: num(a.equity, 0), marginUsed: num(a.margin_used, 0),
                         freeMargin: num(a.free_margin, 0), currency: typeof a.currency === 'string' ? a.currency : 'USD',
                         leverage: num(a.leverage, 1) });
    }
  };
  let barLogMark = 0;
  const begin = () => {
    orders = []; cancels = []; logs = []; logBytes = 0; logsDropped = 0; fatal = null; need = null;
    if (lateActivity) {
      // a promise/async continuation of the previous call tried to use ctx after the call returned
      lateActivity = false;
      fatal = { kind: 'policy', message: 'the script used ctx after a callback returned (promise or async code)', line: null };
    }
  };
  const describe = (e) => {
    // e is whatever the script threw: read it defensively (getters, proxies, non-errors)
    let message = 'uncaught exception', line = null, kind = 'runtime';
    try {
      if (e instanceof ErrorC) {
        const name = StringC(e.name), msg = StringC(e.message);
        message = msg ? name + ': ' + msg : name;
        line = lineOf(e.stack);
        if (name === 'RangeError' && msg.indexOf('call stack') >= 0) kind = 'runtime';
        if (name === 'EvalError' && msg.indexOf('not allowed in strategy scripts') >= 0) kind = 'policy';
      } else {
        message = 'uncaught value: ' + short(e);
      }
    } catch (inner) {
      message = 'uncaught exception (unprintable)';
    }
    return { kind, message: message.slice(0, 300), line };
  };
  const finish = (upto, error) => {
    if (error === null && fatal !== null) error = fatal;
    let stateOut = null;
    if (error === null) {
      let dumped;
      try { dumped = stringify(state); } catch (e) { dumped = e; }
      if (typeof dumped !== 'string' || typeof state !== 'object' || state === null || ArrayC.isArray(state)) {
        error = { kind: 'runtime', message: 'ctx.state must be a JSON-serializable object', line: null };
      } else if (dumped.length > MAX_STATE) {
        error = { kind: 'limit', message: 'ctx.state is ' + dumped.length + ' bytes as JSON, more than ' + MAX_STATE, line: null };
      } else if (dumped !== lastState) {
        lastState = dumped;
        stateOut = dumped;
      }
    }
    if (logsDropped) {
      logs.push('[' + logsDropped + ' log lines dropped: limit of ' + MAX_LOG_LINES + ' lines / ' + MAX_LOG_BYTES + ' bytes per call]');
    }
    const out = { upto, logs };
    if (error !== null) {
      out.ok = false; out.error = error; out.orders = []; out.cancels = [];
    } else {
      out.ok = true; out.orders = orders; out.cancels = cancels;
      if (stateOut !== null) out.state_json = stateOut;
    }
    return stringify(out);
  };
  const needed = (upto) => {
    const nd = need;
    return stringify({ need: { name: nd.name, args: nd.args, kwargs: nd.kwargs, sig: nd.sig, line: nd.line },
                       upto, logs: logs.slice(0, barLogMark) });
  };
  const invoke = (fn, a, b) => {
    // one user callback; returns null or an error description
    beats += 1; heartbeat[0] = beats;
    inCall = true;
    try {
      fn(a, b);
    } catch (e) {
      inCall = false;
      if (need !== null) return null;
      if (fatal !== null) return fatal;
      if (e instanceof Abort) return null;
      return describe(e);
    }
    inCall = false;
    return fatal;
  };
  const makeBar = (i) => ({ ts: cols[0][i], open: cols[1][i], high: cols[2][i], low: cols[3][i],
                            close: cols[4][i], volume: cols[5][i], symbol });
  const grow = (want) => {
    let c = cap < 1024 ? 1024 : cap;
    while (c < want) c *= 2;
    for (let k = 0; k < 6; k++) { const a = new F64(c); a.set(cols[k].subarray(0, n)); cols[k] = a; }
    cap = c;
  };

  const ops = {
    register(p, onStart, onBar, onFill, onReject, onStop) {
      if (callbacks !== null) throw new ErrorC('already registered');
      const cbs = { on_start: onStart, on_bar: onBar, on_fill: onFill, on_reject: onReject, on_stop: onStop };
      callbacks = {};
      for (const k of ObjectC.keys(cbs)) {
        const fn = cbs[k];
        if (fn === undefined) continue;
        if (typeof fn !== 'function') return stringify({ ok: false, error: { kind: 'load', message: k + ' must be a function', line: null } });
        callbacks[k] = fn;
      }
      if (callbacks.on_bar === undefined) {
        return stringify({ ok: false, error: { kind: 'load', message: 'the script must define function onBar(ctx, bar)', line: null } });
      }
      let pj;
      try { pj = p === undefined ? 'null' : stringify(p); } catch (e) { pj = undefined; }
      if (typeof pj !== 'string') {
        return stringify({ ok: false, error: { kind: 'load', message: 'PARAMS must be an object of numbers, strings and booleans (or specs of them)', line: null } });
      }
      return stringify({ ok: true, params_json: pj, callbacks: ObjectC.keys(callbacks) });
    },
    init(sym, name) { symbol = sym; strategyName = name; position = freeze({ symbol, qty: 0, avgPrice: 0, realizedPnl: 0, isFlat: true }); return 'ok'; },
    params(json) { params = freezePlain(parse(json)); return 'ok'; },
    heartbeat() { return heartbeatBuffer; },
    series(count) {
      // the worker copies the bulk frame in as is: int64 timestamps, then five float64 columns
      const buf = new AB(count * 48);
      for (let k = 1; k < 6; k++) cols[k] = new F64(buf, k * count * 8, count);
      cols[0] = new F64(0);
      n = 0; cap = count;
      indByKey.clear(); indBySig.clear();
      pendingTs = new BI64(buf, 0, count);
      return buf;
    },
    seriesDone(count) {
      // timestamps become doubles (exact for ms epochs); the int64 view is then no longer needed
      const ts = new F64(count), raw = pendingTs;
      for (let i = 0; i < count; i++) ts[i] = NumberC(raw[i]);
      cols[0] = ts; pendingTs = null; n = count;
      return 'ok';
    },
    append(json) {
      const m = parse(json);
      if (n >= cap) grow(n + 1);
      const b = m.bar;
      for (let k = 0; k < 6; k++) cols[k][n] = b[k];
      n += 1;
      const ind = m.ind;
      for (const key of ObjectC.keys(ind)) {
        const e = indByKey.get(key);
        if (e === undefined) continue;
        if (e.arr.length < n) { const a = new F64(cap); a.fill(NaN); a.set(e.arr.subarray(0, e.len)); e.arr = a; }
        for (let j = e.len; j < n - 1; j++) e.arr[j] = NaN;
        e.arr[n - 1] = ind[key] === null ? NaN : ind[key];
        e.len = n;
      }
      return 'ok';
    },
    indicator(key, count, sig) {
      // a buffer for `count` values of `key` (the worker copies them in), then map sig -> key
      let e = indByKey.get(key);
      const buf = new AB((count > cap ? count : cap) * 8);
      const arr = new F64(buf);
      arr.fill(NaN);
      e = { arr, len: count };
      indByKey.set(key, e);
      indBySig.set(sig, key);
      return buf;
    },
    late() { const l = lateActivity; lateActivity = false; return l ? 'late' : 'ok'; },
    syntax(source) { RealFunction(source); return 'ok'; },  // compile only, never run; throws SyntaxError
    call(cb, snapshotJson, argJson, stateJson) {
      begin();
      applySnapshot(snapshotJson);
      if (cb === 'on_start') {
        state = parse(stateJson);
        lastState = stringify(state);
      }
      const fn = callbacks[cb];
      if (fn === undefined) return finish(-1, null);
      let arg;
      if (argJson !== null && argJson !== undefined) {
        const raw = parse(argJson);
        arg = cb === 'on_fill'
          ? { id: raw.id, orderId: raw.order_id, symbol: raw.symbol, side: raw.side, qty: raw.qty, price: raw.price,
              fee: raw.fee, ts: raw.ts, strategy: raw.strategy, role: raw.role }
          : raw;
      }
      if (fatal !== null) return finish(-1, fatal);
      barLogMark = 0;
      const err = invoke(fn, ctx, arg);
      if (need !== null) return needed(-1);
      return finish(-1, err);
    },
    bars(start, stop, snapshotJson) {
      begin();
      applySnapshot(snapshotJson);
      const fn = callbacks.on_bar;
      if (fatal !== null) return finish(start - 1, fatal);
      const end = stop < n ? stop : n;
      const yieldAt = dateNow() + BATCH_YIELD_MS;
      let upto = start - 1;
      for (let i = start; i < end; i++) {
        barIndex = i;
        barLogMark = logs.length;
        const err = invoke(fn, ctx, makeBar(i));
        if (need !== null) return needed(i - 1);
        if (err !== null) return finish(i - 1, err);
        upto = i;
        if (orders.length || cancels.length) break;
        if ((i & 1023) === 0 && dateNow() > yieldAt) break;
      }
      return finish(upto, null);
    },
  };
  const entry = function (key, op, a, b, c, d, e, f) {
    // KEY is known only to this closure and to the Python worker: a script that finds TOKEN on
    // globalThis (or runs from a promise between two calls, when `busy` is false) cannot call in.
    if (busy || key !== KEY) throw new ErrorC('the kernel glue is not callable from a strategy');
    if (!ObjectC.prototype.hasOwnProperty.call(ops, op)) throw new ErrorC('unknown op');
    const fn = ops[op];
    busy = true;
    try {
      return fn(a, b, c, d, e, f);
    } finally {
      busy = false; inCall = false;
    }
  };
  defineProperty(G, TOKEN, { value: entry.bind(undefined), writable: false, configurable: false, enumerable: false });
})(%ARGS%);
//# sourceURL=stratkernel-js-glue
