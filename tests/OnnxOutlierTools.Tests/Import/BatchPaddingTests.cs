using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.Import;
using Xunit.Abstractions;

namespace OnnxOutlierTools.Tests.Import;

/// <summary>A left-padded batch of two through the decomposed flavours and the PyTorch exports (HF position ids:
/// cumsum(mask) - 1, 1 on padding). Only real (non-padding) query rows are compared.</summary>
public class BatchPaddingTests(Stories260KModels models, ITestOutputHelper output) : IClassFixture<Stories260KModels>
{
    [Theory]
    [InlineData(LlamaOnnxFlavour.Decomposed)]
    [InlineData(LlamaOnnxFlavour.DecomposedWithPast)]
    public void LeftPaddedBatch_MatchesTorch(LlamaOnnxFlavour flavour)
    {
        int[] a = Stories260K.Tokenizer.Encode(Stories260K.Sentence);
        int[] b = Stories260K.Tokenizer.Encode("Once upon a time, there was a cat.");
        int s = a.Length, pad = s - b.Length;
        Assert.True(pad > 0);
        long[] ids = [.. a.Select(t => (long)t), .. Enumerable.Repeat(0L, pad), .. b.Select(t => (long)t)];
        long[] mask = [.. Enumerable.Repeat(1L, s), .. Enumerable.Repeat(0L, pad), .. Enumerable.Repeat(1L, b.Length)];
        long[] positions = [.. Enumerable.Range(0, s).Select(i => (long)i), .. Enumerable.Repeat(1L, pad), .. Enumerable.Range(0, b.Length).Select(i => (long)i)];

        string torchPath = flavour == LlamaOnnxFlavour.Decomposed ? Stories260K.TorchNoPast : Stories260K.TorchPast;
        var expected = Run(torchPath, ids, mask, positions, s);
        var actual = Run(models.PathOf(flavour), ids, mask, positions, s);
        double diff = 0;
        for (int row = 0; row < 2; row++)
            for (int t = row == 0 ? 0 : pad; t < s; t++)
                diff = Math.Max(diff, Diff.MaxAbs(expected[row][t], actual[row][t]));
        output.WriteLine($"{flavour} vs torch, batch 2 (second row left-padded by {pad}): max |diff| on real rows = {diff:E3}");
        Assert.True(diff <= 1e-4, $"max |diff| {diff}");
    }

    private static float[][][] Run(string path, long[] ids, long[] mask, long[] positions, int s)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        using var session = new InferenceSession(path, options);
        var names = new List<string> { "input_ids", "attention_mask", "position_ids" };
        var values = new List<OrtValue>
        {
            OrtValue.CreateTensorValueFromMemory(ids, [2, s]),
            OrtValue.CreateTensorValueFromMemory(mask, [2, s]),
            OrtValue.CreateTensorValueFromMemory(positions, [2, s]),
        };
        foreach (var input in session.InputMetadata.Where(kv => kv.Key.StartsWith("past_key_values.", StringComparison.Ordinal)))
        {
            names.Add(input.Key);
            values.Add(OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [2, input.Value.Dimensions[1], 0, input.Value.Dimensions[3]]));
        }
        try
        {
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, names, values, ["logits"]);
            var logits = results[0].GetTensorDataAsSpan<float>().ToArray();
            int vocab = logits.Length / (2 * s);
            return Enumerable.Range(0, 2).Select(row => Enumerable.Range(0, s)
                .Select(t => logits.AsSpan((row * s + t) * vocab, vocab).ToArray()).ToArray()).ToArray();
        }
        finally
        {
            foreach (var v in values) v.Dispose();
        }
    }
}
