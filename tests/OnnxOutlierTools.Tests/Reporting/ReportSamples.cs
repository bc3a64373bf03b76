using OnnxOutlierTools.Reporting;

namespace OnnxOutlierTools.Tests.Reporting;

internal static class ReportSamples
{
    public static readonly RunSettings Run = new()
    {
        Text = "corpus/tinystories-valid-excerpt.txt",
        TextSha256 = "5f1c0e2a9b7d4c3e8f6a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6",
        Tokenizer = "onnx-models/stories-planted/tok512.model",
        TokenizerKind = "sentencepiece (llama2.c)",
        SequenceLength = 32,
        MaxTokens = 128,
        Bos = "auto",
        BosAdded = true,
        BatchSize = 2,
        Device = "cpu",
        DeviceUsed = "cpu",
        CommandLine = "onnx-outliers analyze onnx-models/stories-planted/model.onnx --text corpus/tinystories-valid-excerpt.txt --seq-len 32 --max-tokens 128 -o out",
        ToolVersion = "0.8.0",
        Finished = new DateTimeOffset(2026, 12, 3, 8, 30, 0, TimeSpan.Zero),
    };
}
