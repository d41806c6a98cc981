package demo

// opsScript fills the operator panel from /ops/stats and wires its
// buttons; plain JavaScript and SVG, no build step.
const opsScript = `
(function () {
  var ops = document.getElementById('ops');
  function text(id, v) { document.getElementById(id).textContent = v; }
  function post(path) {
    return fetch(path, {method: 'POST'}).then(function (r) {
      if (!r.ok) { return r.text().then(function (t) { alert(t); }); }
      return refresh();
    });
  }
  function button(label, cls, path, reload) {
    var b = document.createElement('button');
    b.textContent = label; b.className = 'op ' + cls;
    b.onclick = function () {
      post(path).then(function () { if (reload) { location.reload(); } });
    };
    return b;
  }
  function line(points, max, color) {
    if (points.length < 2) { return ''; }
    var w = 360, h = 110, step = w / (points.length - 1);
    return '<polyline fill="none" stroke-width="2" stroke="' + color + '" points="' + points.map(function (v, i) {
      return (i * step).toFixed(1) + ',' + (115 - (max > 0 ? v / max : 0) * h).toFixed(1);
    }).join(' ') + '"/>';
  }
  function render(s) {
    ops.hidden = false;
    var tbody = document.querySelector('#nodes tbody');
    tbody.textContent = '';
    s.nodes.forEach(function (n) {
      var tr = document.createElement('tr');
      tr.className = 'node';
      var a = document.createElement('td'); a.textContent = n.addr;
      var st = document.createElement('td'); st.textContent = n.state; st.className = 'node-state ' + n.state.split(' ')[0];
      var b = document.createElement('td');
      if (n.managed) {
        b.appendChild(button('restart', 'node-restart', '/ops/nodes/restart?addr=' + encodeURIComponent(n.addr), true));
        b.appendChild(button(n.running ? 'kill' : 'start', 'node-kill', '/ops/nodes/' + (n.running ? 'kill' : 'start') + '?addr=' + encodeURIComponent(n.addr), false));
      }
      if (s.nodes.length > 1) {
        b.appendChild(button('remove', 'node-remove', '/ops/nodes/remove?addr=' + encodeURIComponent(n.addr), false));
      }
      tr.appendChild(a); tr.appendChild(st); tr.appendChild(b);
      tbody.appendChild(tr);
    });
    document.getElementById('node-add').disabled = !s.can_add;
    text('db-state', s.db_cut_until ? 'database CUT until ' + s.db_cut_until.substring(11, 19) + ' UTC' : 'database up');
    text('ops-hit-ratio', (100 * s.hit_ratio).toFixed(1) + ' % (last minute; ' + (100 * s.hit_ratio_total).toFixed(1) + ' % since start)');
    text('ops-db-rate', s.db_per_min.toFixed(0));
    text('ops-wt-rate', s.write_through_per_min.toFixed(0) + ' calls / min');
    text('ops-db-reads', s.db_reads);
    text('ops-cache-errors', s.cache_errors);
    text('ops-reaper', s.reaper.end ? s.reaper.end.substring(11, 19) + ' UTC, ' + s.reaper.examined + ' rows in ' + s.reaper.duration_ms + ' ms' + (s.reaper.error ? ' — ' + s.reaper.error : '') : 'no pass yet');
    var h = s.history, max = 1;
    h.forEach(function (p) { max = Math.max(max, p.db_per_min, p.write_through_per_min); });
    document.getElementById('chart').innerHTML =
      line(h.map(function (p) { return p.hit_ratio; }), 1, '#2a2') +
      line(h.map(function (p) { return p.write_through_per_min; }), max, '#999') +
      line(h.map(function (p) { return p.db_per_min; }), max, '#e80');
  }
  var timer;
  function refresh() {
    return fetch('/ops/stats').then(function (r) {
      if (r.status === 404) { clearInterval(timer); } // not the cluster: no panel
      return r.ok ? r.json() : null;
    }).then(function (s) { if (s) { render(s); } }).catch(function () {});
  }
  document.getElementById('node-add').onclick = function () { post('/ops/nodes/add'); };
  document.getElementById('db-cut').onclick = function () { post('/ops/db/cut?seconds=30'); };
  timer = setInterval(refresh, 2000);
  refresh();
})();
`
