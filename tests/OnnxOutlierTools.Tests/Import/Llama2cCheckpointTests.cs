using OnnxOutlierTools.Import;

namespace OnnxOutlierTools.Tests.Import;

public sealed class Llama2cCheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oot-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Load_Stories260K_HasManifestConfig()
    {
        var c = Stories260K.Weights.Config;
        Assert.Equal(DecoderConfig.Stories260K, c);
        Assert.Equal((64, 172, 5, 8, 4, 512, 512), (c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KvHeads, c.VocabSize, c.MaxSeqLen));
        Assert.Equal(8, c.HeadSize);
        Assert.True(c.SharedClassifier);
        Assert.Same(Stories260K.Weights.TokenEmbedding, Stories260K.Weights.Classifier);
        Assert.Equal(RopeLayout.InterleavedPairs, c.RopeLayout);
        Assert.Equal(new FileInfo(Stories260K.CheckpointPath).Length, 28 + 4 * Llama2cCheckpoint.FloatCount(c));
    }

    [Fact]
    public void Load_TruncatedCheckpoint_ReportsFileAndSizesOnOneLine()
    {
        string path = Path.Combine(_dir, "truncated.bin");
        var bytes = File.ReadAllBytes(Stories260K.CheckpointPath);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length - 100).ToArray());
        var ex = Assert.Throws<Llama2cFormatException>(() => Llama2cCheckpoint.Load(path));
        Assert.StartsWith(path + ": ", ex.Message);
        Assert.Contains($"expected {bytes.Length} bytes", ex.Message);
        Assert.Contains($"has {bytes.Length - 100} bytes", ex.Message);
        Assert.Contains("truncated", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Load_TrailingBytes_IsRejected()
    {
        string path = Path.Combine(_dir, "long.bin");
        File.WriteAllBytes(path, [.. File.ReadAllBytes(Stories260K.CheckpointPath), 0, 0, 0, 0]);
        var ex = Assert.Throws<Llama2cFormatException>(() => Llama2cCheckpoint.Load(path));
        Assert.StartsWith(path, ex.Message);
    }

    [Fact]
    public void Load_ShortOrNonsenseHeader_IsRejectedWithFileName()
    {
        string shortPath = Path.Combine(_dir, "short.bin");
        File.WriteAllBytes(shortPath, new byte[10]);
        Assert.StartsWith(shortPath, Assert.Throws<Llama2cFormatException>(() => Llama2cCheckpoint.Load(shortPath)).Message);

        string badPath = Path.Combine(_dir, "bad.bin");
        var header = new[] { 64, 172, 5, 7, 4, 512, 512 }.SelectMany(BitConverter.GetBytes).ToArray(); // 7 heads do not divide 64
        File.WriteAllBytes(badPath, header);
        var ex = Assert.Throws<Llama2cFormatException>(() => Llama2cCheckpoint.Load(badPath));
        Assert.StartsWith(badPath, ex.Message);
        Assert.Contains("heads", ex.Message);
    }

    [Fact]
    public void SaveLoad_SeparateClassifier_RoundTrips()
    {
        var config = new DecoderConfig(16, 40, 2, 4, 2, 32, 24, sharedClassifier: false);
        var weights = SyntheticDecoder.Create(config, seed: 5);
        string path = Path.Combine(_dir, "synthetic.bin");
        Llama2cCheckpoint.Save(weights, path);
        Assert.Equal(28 + 4 * Llama2cCheckpoint.FloatCount(config), new FileInfo(path).Length);
        Assert.Equal(-32, BitConverter.ToInt32(File.ReadAllBytes(path), 20)); // negative vocab = separate classifier
        var back = Llama2cCheckpoint.Load(path);
        Assert.Equal(config, back.Config);
        Assert.Equal(weights.Classifier, back.Classifier);
        Assert.Equal(weights.TokenEmbedding, back.TokenEmbedding);
        Assert.Equal(weights.Layers[1].W2, back.Layers[1].W2);
        Assert.Equal(weights.Layers[0].Wk, back.Layers[0].Wk);
        Assert.Equal(weights.FinalNorm, back.FinalNorm);
    }
}
