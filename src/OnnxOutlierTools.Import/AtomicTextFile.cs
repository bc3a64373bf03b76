using System.Text;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Text;

namespace OnnxOutlierTools.Import;

/// <summary>Writes a small text file (config.json) the way <see cref="ModelWriter"/> writes models: a uniquely
/// named hidden temporary in the same folder, flushed to disk, then renamed over the target, so a reader
/// sees the old file or the new one, never half of one.</summary>
public static class AtomicTextFile
{
    /// <summary>Writes <paramref name="text"/> (UTF-8, no BOM) to <paramref name="path"/>. Without
    /// <paramref name="overwrite"/> an existing file is an <see cref="OutputExistsException"/>; with it the file
    /// is replaced and keeps its permissions.</summary>
    public static void Write(string path, string text, bool overwrite)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(text);
        string full = Path.GetFullPath(path);
        if (!overwrite && File.Exists(full)) throw new OutputExistsException(path, "already exists");
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid().ToString("N")[..12]}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                stream.Write(new UTF8Encoding(false).GetBytes(text));
                stream.Flush(flushToDisk: true);
            }
            // Replacing a file must not widen who may read it (a 0600 config stays 0600).
            if (!OperatingSystem.IsWindows() && File.Exists(full)) File.SetUnixFileMode(temp, File.GetUnixFileMode(full));
            File.Move(temp, full, overwrite);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ModelSaveException(path, $"cannot write: {Printable.FirstLine(ex.Message)}", ex);
        }
        finally
        {
            try { File.Delete(temp); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        }
    }
}
