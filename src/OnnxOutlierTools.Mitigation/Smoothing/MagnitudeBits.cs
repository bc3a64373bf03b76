using System.Numerics;

namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>Largest magnitudes of IEEE floats read as their bit patterns: with the sign bit cleared, the patterns of
/// non-NaN values order as the magnitudes do, so a maximum is an unsigned-integer maximum at memory speed with no
/// conversion; NaN patterns (above infinity's) count as zero, as a comparison skips them.</summary>
internal static class MagnitudeBits
{
    /// <summary>max over <paramref name="bits"/> of the magnitude pattern (NaN skipped).</summary>
    public static T Max<T>(ReadOnlySpan<T> bits, T magnitudeMask, T infinity) where T : unmanaged, IBinaryInteger<T>
    {
        var mask = new Vector<T>(magnitudeMask);
        var inf = new Vector<T>(infinity);
        var best = Vector<T>.Zero;
        int i = 0;
        for (; i <= bits.Length - Vector<T>.Count; i += Vector<T>.Count)
        {
            var v = new Vector<T>(bits.Slice(i)) & mask;
            best = Vector.Max(best, Vector.ConditionalSelect(Vector.GreaterThan(v, inf), Vector<T>.Zero, v));
        }
        T largest = T.Zero;
        for (int k = 0; k < Vector<T>.Count; k++) largest = T.Max(largest, best[k]);
        for (; i < bits.Length; i++)
        {
            T v = bits[i] & magnitudeMask;
            if (v <= infinity && v > largest) largest = v;
        }
        return largest;
    }

    /// <summary><paramref name="running"/>[j] = max(running[j], magnitude pattern of bits[j]) (NaN skipped).</summary>
    public static void MaxInto<T>(ReadOnlySpan<T> bits, Span<T> running, T magnitudeMask, T infinity) where T : unmanaged, IBinaryInteger<T>
    {
        var mask = new Vector<T>(magnitudeMask);
        var inf = new Vector<T>(infinity);
        int i = 0;
        for (; i <= bits.Length - Vector<T>.Count; i += Vector<T>.Count)
        {
            var v = new Vector<T>(bits.Slice(i)) & mask;
            v = Vector.ConditionalSelect(Vector.GreaterThan(v, inf), Vector<T>.Zero, v);
            Vector.Max(new Vector<T>(running.Slice(i)), v).CopyTo(running.Slice(i));
        }
        for (; i < bits.Length; i++)
        {
            T v = bits[i] & magnitudeMask;
            if (v <= infinity && v > running[i]) running[i] = v;
        }
    }
}
