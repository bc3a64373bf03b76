namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>A seeded, evenly spread sample of indices: [0, total) is cut into <c>count</c> equal strata and one index is drawn
/// uniformly (System.Random with the seed) from each, so the sample covers the whole range (every window, every part of a
/// weight) the way a plain stride does, without locking onto a period of the data (every 16th token, a head boundary). The
/// same (total, count, seed) always gives the same indices, ascending; count >= total gives every index.</summary>
public static class EvenSample
{
    public static int[] Indices(long total, int count, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(total);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count >= total) return Enumerable.Range(0, checked((int)total)).ToArray();
        var random = new Random(seed);
        var indices = new int[count];
        for (int k = 0; k < count; k++)
        {
            long start = total * k / count, end = total * (k + 1) / count;
            indices[k] = checked((int)(start + random.NextInt64(end - start)));
        }
        return indices;
    }
}
