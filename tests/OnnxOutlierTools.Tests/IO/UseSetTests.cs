using OnnxOutlierTools.Ir;

namespace OnnxOutlierTools.Tests.IO;

/// <summary>The compact use set replaced a HashSet; passes walk uses in set order, so the order must be
/// the HashSet's under any mix of adds and removes (small sets and indexed large ones).</summary>
public sealed class UseSetTests
{
    [Theory]
    [InlineData(1, 6)]
    [InlineData(2, 40)]
    [InlineData(3, 300)]
    public void AddRemove_RandomSequence_MatchesHashSetContentsAndOrder(int seed, int distinct)
    {
        var random = new Random(seed);
        var graph = new Graph("g");
        var nodes = Enumerable.Range(0, 8).Select(i => new Node("", "Identity", [], [$"o{i}"], name: $"n{i}")).ToArray();
        Usage Pick()
        {
            int k = random.Next(distinct);
            return k % 9 == 8 ? new Usage(null, graph, k) : new Usage(nodes[k % 8], null, k / 8);
        }
        var expected = new HashSet<Usage>();
        var actual = new UseSet();
        for (int step = 0; step < 4000; step++)
        {
            var use = Pick();
            bool add = random.NextDouble() < 0.55;
            Assert.Equal(add ? expected.Add(use) : expected.Remove(use), add ? actual.Add(use) : actual.Remove(use));
            Assert.Equal(expected.Count, actual.Count);
            if (step % 50 == 0) Assert.Equal(expected.ToArray(), actual.ToArray());
        }
        Assert.Equal(expected.ToArray(), actual.ToArray());
        Assert.Equal(expected.Any(u => u.IsGraphOutput), actual.Any(u => u.IsGraphOutput));
    }
}
