# How many test samples' base scores lie beyond the calibration stream's largest, and
# beyond u (the tail's start, the (k+1)-th largest, k = ceil(sqrt(n))), per class, from
# stream_lab dumps (tests/lab/stream_lab.c's format). Usage: python3 beyond.py DUMP...
import array, math, struct, sys
KR = 96
def read_set(f, L, labels):
    n = struct.unpack('<i', f.read(4))[0]
    lab = array.array('i'); 
    if labels: lab.frombytes(f.read(4 * n))
    f.seek(4 * n * L, 1)
    zre = array.array('d'); zre.frombytes(f.read(8 * n))
    zlat = array.array('d'); zlat.frombytes(f.read(8 * n))
    f.seek(2 * 4 * n * KR, 1)
    return n, lab, zre, zlat
for path in sys.argv[1:]:
    cls = int(path.split('class')[-1].split('.')[0])
    with open(path, 'rb') as f:
        assert f.read(5) == b'SLAB1'
        L, n_ref = struct.unpack('<ii', f.read(8)); alpha = struct.unpack('<d', f.read(8))[0]
        f.seek(4 * L, 1)
        n, lab, zre, zlat = read_set(f, L, 1)
        nc, _, czre, czlat = read_set(f, L, 0)
    base = [alpha * zre[i] + (1 - alpha) * zlat[i] for i in range(n)]
    cal = sorted(float(struct.unpack('f', struct.pack('f', alpha * czre[i] + (1 - alpha) * czlat[i]))[0]) for i in range(nc))
    k = math.ceil(math.sqrt(nc)); u = cal[nc - 1 - k]; mx = cal[-1]
    an = [b for b, l in zip(base, lab) if l == cls]; no = [b for b, l in zip(base, lab) if l != cls]
    print(f"class {cls}: anomalies {len(an)}: above u {sum(b > u for b in an)}, above the largest {sum(b > mx for b in an)}; "
          f"normals {len(no)}: above u {sum(b > u for b in no)}, above the largest {sum(b > mx for b in no)}")
