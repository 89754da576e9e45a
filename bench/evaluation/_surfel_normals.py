"""Marching-cubes surfel normals of the 256 codes of a 2x2x2 voxel neighbourhood (data table).

For each code (bit 7 = voxel (i-1, j-1, k-1) ... bit 0 = voxel (i, j, k)) the normals of the triangles that
the marching-cubes algorithm places in that neighbourhood; the length of a normal is the triangle's area on
a 1 mm grid. These are the values of the table that DeepMind's ``surface-distance`` package
(``lookup_tables``, Apache-2.0) uses, so surfel areas, and hence area-weighted surface distances, equal
that package's. Encoding: one word per code, three letters per normal, letter ``a``..``i`` = -4/8..4/8.
"""

from __future__ import annotations

__all__ = ["NORMALS"]

_DIGITS = "abcdefghi"

_TABLE = (
    "eee fff ddf ccegge fdf cecgeg fdfddf ieegggfff dff fffdff cegceg ieeccgddf gcegce ieegcgdfd aeecggdff ieeiee "
    "fdd eccegg ddffdd eaegggfff fdffdd eeagggddd ddffdffdd dddcccgggfff dfffdd ecceggdff cegcegfdd fffhhhecgceg "
    "fddgcegce hhhegcdddcge aeedddcccfff aeedddccc fdf ffffdf ecgegc eaeffdggc fdffdf fdfcecgeg ecgegcfdf "
    "bbheggffdcec dfffdf ffffdfdff eeiccgddf ggcggcffdddf fdfgcegce ieegcgdfdfdf egchbbdffgge aeeccgddf gcecge "
    "eiecggfdd eiefdfcgc eieeae gcecgefdf bbbcegdddcge fffeaecccddd eaecccddd dffgcecge eieggcddfddf bhbccedfdceg "
    "eieggcddf gcecgegcegce ccecceddf fffccecce ccecce ddf fffddf ddfddf ddfccegge ecgecg eeigcgfdf ecgecgddf "
    "hbheccdfdgge ddfdff fffddfdff ddfcegceg ieeccgddfddf eiecgcfdf cgccgcdfddfd cechbbegcdff ieecgcfdf ceggec "
    "eeicggdff ddfceggec cecbhhccedff eeaggcddf eeieei ffffffgggeei fffgggeei ceggecdff eeigcgfdffdf cegcegceggec "
    "fdfgeggeg gegbbhcgeddf eeigcgfdf fffgeggeg geggeg ddffdf fffddffdf ddfecgegc eaeffdggcddf ecgecgfdf "
    "eeigcgfdffdf ecgecgecgegc eggeggfdd dfffdfddf dfffdfddffff eeiccgddfddf ffffdffdd eiecgcfdffdf fffddffdd "
    "ecceggfff ffffdd ieegccfdd cggdffcggfdd hbheggdfdceg eaecggdff bbhgceeggddf dffcggeei fffeggegg eggegg "
    "ieegggffffff fdfddffff cecgegfff ffffdf cceggefff fffddf ffffff fff fff ffffff fffddf cceggefff ffffdf "
    "cecgegfff fdfddffff ieegggffffff eggegg fffeggegg dffcggeei bbhgceeggddf eaecggdff hbheggdfdceg cggdffcggfdd "
    "ieegccfdd ffffdd ecceggfff fffddffdd eiecgcfdffdf ffffdffdd eeiccgddfddf dfffdfddffff dfffdfddf eggeggfdd "
    "ecceggeggegg eeigcgfdffdf ecgecgfdf eaeffdggcddf ddfecgegc fffddffdf ddffdf geggeg fffgeggeg eeigcgfdf "
    "gegbbhcgeddf fdfgeggeg cecgeggeggeg eeigcgfdffdf ceggecdff fffgggeei ffffffgggeei eeieei eeaggcddf "
    "cecbhhccedff ddfceggec eeicggdff ceggec ieecgcfdf cechbbegcdff cgccgcdfddfd eiecgcfdf ieeccgddfddf ddfcegceg "
    "fffddfdff ddfdff hbheccdfdgge ecgecgddf eeigcgfdf ecgecg ddfccegge ddfddf fffddf ddf ccecce fffccecce "
    "ccecceddf ccecceccegge eieggcddf bhbccedfdceg eieggcddfddf dffgcecge eaecccddd fffeaecccddd bbbcegdddcge "
    "gcecgefdf eieeae eiefdfcgc eiecggfdd gcecge aeeccgddf egchbbdffgge ieegcgdfdfdf fdfgcegce ggcggcffdddf "
    "eeiccgddf ffffdfdff dfffdf bbheggffdcec ecgegcfdf fdfcecgeg fdffdf eaeffdggc ecgegc ffffdf fdf aeedddccc "
    "aeedddcccfff hhhegcdddcge fddgcegce fffhhhecgceg cegcegfdd ecceggdff dfffdd dddcccgggfff ddffdffdd eeagggddd "
    "fdffdd eaegggfff ddffdd eccegg fdd ieeiee aeecggdff ieegcgdfd gcegce ieeccgddf cegceg fffdff dff ieegggfff "
    "fdfddf cecgeg fdf ccegge ddf fff eee"
)


def _decode(word: str) -> tuple[tuple[float, float, float], ...]:
    vals = [(_DIGITS.index(ch) - 4) / 8 for ch in word]
    return tuple((vals[i], vals[i + 1], vals[i + 2]) for i in range(0, len(vals), 3))


NORMALS: tuple[tuple[tuple[float, float, float], ...], ...] = tuple(_decode(w) for w in _TABLE.split(" "))
assert len(NORMALS) == 256
