// vmedia fleet dashboard: keeps the server-rendered page current from /api/events.
// Every value is written with textContent (never as HTML). Without script the page
// still works; it just does not update itself.
(function () {
  'use strict';
  var live = document.getElementById('live');
  var view = document.body.getAttribute('data-view');
  if (!live || !view || !window.EventSource) { return; }

  function setLive(text, on) {
    live.textContent = 'Live updates: ' + text;
    live.className = on ? 'live on' : 'live';
  }

  function cell(row, col) { return row.querySelector('[data-col="' + col + '"]'); }

  function flash(el) {
    el.classList.remove('updated');
    void el.offsetWidth;
    el.classList.add('updated');
  }

  function stateText(ev) {
    return ev.target_provision_state ? ev.provision_state + ' \u2192 ' + ev.target_provision_state
      : ev.provision_state;
  }

  function updateRow(ev) {
    var row = document.querySelector('tr[data-uuid="' + ev.uuid + '"]');
    if (!row) { return; }
    var s = cell(row, 'state');
    if (s && s.textContent !== stateText(ev)) { s.textContent = stateText(ev); flash(s); }
    var sh = cell(row, 'share');
    if (sh) { sh.textContent = ev.share || '-'; }
    var pw = cell(row, 'power');
    if (pw && ev.power_state) { pw.textContent = ev.power_state; }
    var e = cell(row, 'last_error');
    if (e) { e.textContent = ev.last_error || ''; }
  }

  function utc(ms) { return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'); }

  function updateNode(ev) {
    if (document.body.getAttribute('data-node') !== ev.uuid) { return; }
    var st = document.querySelector('dd[data-col="state"]');
    var before = st ? st.textContent : '';
    var set = function (col, v) {
      var el = document.querySelector('dd[data-col="' + col + '"]');
      if (el) { el.textContent = v || '-'; }
    };
    set('state', ev.provision_state);
    set('target', ev.target_provision_state);
    set('progress', ev.progress);
    set('last_error', ev.last_error);
    set('share', ev.share);
    if (ev.power_state) { set('power', ev.power_state); }
    if (before && before !== ev.provision_state) {
      var body = document.querySelector('#history tbody');
      if (body) {
        var tr = document.createElement('tr');
        [utc(ev.at_ms), before, ev.provision_state, ev.last_error || ''].forEach(function (t) {
          var td = document.createElement('td');
          td.textContent = t;
          tr.appendChild(td);
        });
        body.insertBefore(tr, body.firstChild);
        flash(tr);
      }
    }
  }

  function row(cells, header) {
    var tr = document.createElement('tr');
    cells.forEach(function (c, i) {
      var td = document.createElement(i === 0 && header ? 'th' : 'td');
      if (i === 0 && header) { td.scope = 'row'; }
      if (c && c.node) { td.appendChild(c.node); } else { td.textContent = String(c); }
      if (typeof c === 'number') { td.className = 'num'; }
      tr.appendChild(td);
    });
    return tr;
  }

  function link(href, text) {
    var a = document.createElement('a');
    a.href = href;
    a.textContent = text;
    return { node: a };
  }

  function renderSummary(s) {
    var total = document.getElementById('total');
    if (total) { total.textContent = String(s.total); }
    var states = document.querySelector('#states tbody');
    if (states) {
      states.textContent = '';
      Object.keys(s.counts).sort().forEach(function (k) {
        var tr = row([link('/?state=' + encodeURIComponent(k), k), s.counts[k]], true);
        tr.setAttribute('data-state', k);
        states.appendChild(tr);
      });
    }
    var fails = document.querySelector('#failures tbody');
    if (fails) {
      fails.textContent = '';
      if (!s.failures.length) { fails.appendChild(row(['No failures.'])).firstChild.colSpan = 4; }
      s.failures.forEach(function (f) {
        fails.appendChild(row([f.reason, f.state, f.count,
          link('/node/' + encodeURIComponent(f.example_uuid), f.example_name || f.example_uuid)]));
      });
    }
    var shares = document.querySelector('#shares tbody');
    if (shares && s.shares) {
      s.shares.forEach(function (a) {
        var tr = shares.querySelector('tr[data-agent="' + a.id + '"]');
        if (!tr) { return; }
        var tds = tr.querySelectorAll('td');
        if (tds.length < 4) { return; }
        tds[0].textContent = a.health;
        tds[0].className = 'health-' + a.health;
        var m = tds[1].querySelector('meter');
        if (m) { m.max = a.capacity; m.value = a.active; m.textContent = a.active + '/' + a.capacity; }
        if (tds[1].lastChild && tds[1].lastChild.nodeType === 3) {
          tds[1].lastChild.textContent = ' ' + a.active + ' / ' + a.capacity;
        }
        tds[2].textContent = String(a.queued);
        tds[3].textContent = String(a.nodes);
      });
    }
  }

  // At most one summary request in flight, and at most one every 2 s.
  var summaryTimer = null;
  function scheduleSummary() {
    if (view !== 'fleet' || summaryTimer) { return; }
    summaryTimer = setTimeout(function () {
      fetch('/api/summary', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) { if (s) { renderSummary(s); } })
        .catch(function () {})
        .then(function () { summaryTimer = null; });
    }, 2000);
  }

  var es = new EventSource('/api/events');
  es.addEventListener('hello', function () { setLive('on', true); });
  es.onerror = function () { setLive('reconnecting\u2026', false); };
  es.addEventListener('nodes', function (e) {
    var list;
    try { list = JSON.parse(e.data); } catch (x) { return; }
    list.forEach(function (ev) { updateRow(ev); updateNode(ev); });
    scheduleSummary();
  });
  es.addEventListener('overflow', function (e) {
    var n = 0;
    try { n = JSON.parse(e.data).changes; } catch (x) { n = 0; }
    setLive('on (' + n + ' changes in the last second; the summary is refreshed, rows may be stale: reload for the newest)', true);
    scheduleSummary();
  });
})();
