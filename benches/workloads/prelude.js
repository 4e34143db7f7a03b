// The JS prelude the QuickJS workload evaluates in `wizer-initialize`: builds the kind of
// state a JS program sets up before it serves its first request.
var catalog = [];
for (var i = 0; i < 20000; i++) {
  catalog.push({ id: i, name: "item" + i, price: (i * 7919) % 10007, tags: ["t" + (i % 13)] });
}
var byName = new Map(catalog.map(function (o) { return [o.name, o]; }));
var byTag = {};
catalog.forEach(function (o) { (byTag[o.tags[0]] = byTag[o.tags[0]] || []).push(o.id); });
var snapshot = JSON.parse(JSON.stringify(catalog.slice(0, 3000)));
var fib = [0, 1];
for (var k = 2; k < 70; k++) fib.push(fib[k - 1] + fib[k - 2]);
var idPattern = /^item(\d+)$/;
var words = "the quick brown fox jumps over the lazy dog ".repeat(200).split(" ");
var wordCount = words.reduce(function (m, w) { m[w] = (m[w] || 0) + 1; return m; }, {});
class Cart {
  constructor() { this.lines = []; }
  add(name, n) { this.lines.push([byName.get(name), n]); return this; }
  total() { return this.lines.reduce(function (s, l) { return s + l[0].price * l[1]; }, 0); }
}
function check() {
  var m = idPattern.exec("item4242");
  return new Cart().add("item12", 3).add("item" + m[1], 1).total() + byTag.t5.length
    + snapshot.length + wordCount.fox + (fib[30] % 1000);
}
