import csv, sys
a = list(csv.DictReader(open(sys.argv[1]))); b = list(csv.DictReader(open(sys.argv[2])))
assert len(a) == len(b)
print(f"rows {len(a)}: {sys.argv[1]} vs {sys.argv[2]}")
cols = [c for c in a[0] if c not in ("index", "label")]
for c in cols:
    diff = 0; mx = 0.0; mxabs = 0.0; where = -1
    for i, (r, s) in enumerate(zip(a, b)):
        if r[c] != s[c]:
            diff += 1
            try:
                x, y = float(r[c]), float(s[c])
                d = abs(x - y); rel = d / max(abs(x), 1e-300)
                if rel > mx: mx, where = rel, i
                mxabs = max(mxabs, d)
            except ValueError:
                pass
    print(f"  {c:18s} differ in {diff:5d} rows; max |change| {mxabs:.3g}, max relative {mx:.3g} (row {where})")
