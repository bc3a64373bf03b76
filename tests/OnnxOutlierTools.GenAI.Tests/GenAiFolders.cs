using OnnxOutlierTools.Tests;

namespace OnnxOutlierTools.GenAI.Tests;

/// <summary>Writable copies of fixture folders (genai and the tools never write into ../shared).</summary>
public static class GenAiFolders
{
    public static string CopyGqaFixture(string target) => CopyFolder(Path.GetDirectoryName(Fixtures.Export("llama-genai-gqa-fp32", "model.onnx"))!, target);

    public static string CopyFolder(string source, string target)
    {
        Directory.CreateDirectory(target);
        foreach (string file in Directory.EnumerateFiles(source))
            File.WriteAllBytes(Path.Combine(target, Path.GetFileName(file)), File.ReadAllBytes(file));
        return target;
    }
}
