using OnnxOutlierTools.Import;
using OnnxOutlierTools.Runtime;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Import;

public class Llama2cReferenceTests(ITestOutputHelper output)
{
    [Fact]
    public void Forward_ManifestTokens_MatchesTorchExportOnOrt()
    {
        int[] tokens = Stories260K.PromptAndContinuation;
        var reference = Llama2cReference.Forward(Stories260K.Weights, tokens);
        using var torch = new KvCacheDecoder(Stories260K.TorchNoPast);
        var logits = torch.Run(tokens).Logits;
        double diff = Diff.MaxAbs(reference, logits);
        output.WriteLine($"float64 reference vs llama-torch-nopast (ORT CPU), {tokens.Length} positions: max |diff| = {diff:E3}");
        Assert.True(diff <= 1e-4, $"max |diff| {diff}");
    }

    [Fact]
    public void Greedy_OnceUponATime_ReproducesManifestContinuation()
    {
        var reference = new Llama2cReference(Stories260K.Weights);
        var ids = reference.Greedy(Stories260K.OnceUponATime, 40);
        Assert.Equal(Stories260K.GreedyContinuation, ids);
        Assert.Equal(Stories260K.GreedyText, Stories260K.Tokenizer.Decode(ids, previous: Stories260K.OnceUponATime[^1]));
    }

    [Fact]
    public void Forward_PerplexityWindow0_MatchesManifestNll()
    {
        // MANIFEST "Perplexity" A: window 0 = the first 256 stream tokens, positions 1..255 scored: sum NLL 349.9732.
        string text = File.ReadAllText(Fixtures.Path("text", "tinystories-sample.txt"));
        var stream = text.Split("\n\n").Select(c => c.Trim()).Where(c => c.Length > 0)
            .SelectMany(c => Stories260K.Tokenizer.Encode(c)).Take(256).ToArray();
        var logits = Llama2cReference.Forward(Stories260K.Weights, stream);
        double nll = 0;
        for (int t = 0; t + 1 < stream.Length; t++)
        {
            double max = logits[t].Max();
            double logSum = max + Math.Log(logits[t].Sum(v => Math.Exp(v - max)));
            nll += logSum - logits[t][stream[t + 1]];
        }
        output.WriteLine($"window 0 sum NLL (float64 reference) = {nll:F4}");
        Assert.Equal(349.9732, nll, 3);
    }

    [Fact]
    public void Forward_RotateHalfWeights_GiveTheSameLogits()
    {
        // The same model with wq/wk permuted to rotate-half order and the layout flag flipped is the same function.
        var w = Stories260K.Weights;
        var c = w.Config;
        var config = new DecoderConfig(c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KvHeads, c.VocabSize, c.MaxSeqLen, ropeLayout: RopeLayout.RotateHalf);
        var layers = w.Layers.Select(l => new LayerWeights(l.AttentionNorm,
            Rope.InterleavedToRotateHalf(l.Wq, c.Heads, c.HeadSize, c.Dim), Rope.InterleavedToRotateHalf(l.Wk, c.KvHeads, c.HeadSize, c.Dim),
            l.Wv, l.Wo, l.FfnNorm, l.W1, l.W2, l.W3)).ToArray();
        var permuted = new DecoderWeights(config, w.TokenEmbedding, layers, w.FinalNorm);
        var a = Llama2cReference.Forward(w, Stories260K.OnceUponATime);
        var b = Llama2cReference.Forward(permuted, Stories260K.OnceUponATime);
        for (int t = 0; t < a.Length; t++)
            for (int i = 0; i < a[t].Length; i++) Assert.Equal(a[t][i], b[t][i], 1e-12);
        Assert.Equal(w.Layers[2].Wq, Rope.RotateHalfToInterleaved(layers[2].Wq, c.Heads, c.HeadSize, c.Dim));
    }
}
